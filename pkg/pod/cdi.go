package pod

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
)

// cdiDevices are the fully qualified CDI device names (vendor.com/class=name)
// a container asks for: ContainerConfig.cdi_devices, which kubelet fills from
// device plugins and DRA drivers, and the older cdi.k8s.io/ annotations
// (before kubelet 1.28), without duplicates.
func cdiDevices(cfg *runtimeapi.ContainerConfig) ([]string, error) {
	var names []string
	for _, d := range cfg.GetCDIDevices() {
		if !parser.IsQualifiedName(d.GetName()) {
			return nil, invalid("CDI device %q is not a qualified name (vendor.com/class=name)", d.GetName())
		}
		if !slices.Contains(names, d.GetName()) {
			names = append(names, d.GetName())
		}
	}
	_, annotated, err := cdi.ParseAnnotations(cfg.GetAnnotations())
	if err != nil {
		return nil, invalid("CDI annotations: %v", err)
	}
	for _, n := range annotated {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}

// injectCDI applies the container edits of the CDI devices cfg asks for
// (device nodes, mounts, environment, hooks) to spec. A device no spec
// defines fails the container: it must not start without hardware it was
// promised.
func (m *Manager) injectCDI(spec *specs.Spec, cfg *runtimeapi.ContainerConfig) error {
	names, err := cdiDevices(cfg)
	if err != nil || len(names) == 0 {
		return err
	}
	if m.cdi == nil {
		return fmt.Errorf("container %q asks for CDI devices %s, but cri-shim has no CDI spec directories (--cdi-spec-dirs): %w",
			cfg.GetMetadata().GetName(), strings.Join(names, ", "), errdefs.ErrFailedPrecondition)
	}
	unresolved, err := m.cdi.InjectDevices(spec, names...)
	if len(unresolved) > 0 {
		return fmt.Errorf("container %q: no CDI spec in %s defines %s: %w", cfg.GetMetadata().GetName(),
			strings.Join(m.cfg.CDISpecDirs, ":"), strings.Join(unresolved, ", "), errdefs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("container %q: apply CDI devices %s: %w", cfg.GetMetadata().GetName(), strings.Join(names, ", "), err)
	}
	return nil
}
