package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/cri-shim/cri-shim/pkg/netns"
)

// network is the pod network through libcni: the first network config in
// the config directory (by file name, as kubelet's dockershim and
// containerd choose), reloaded when the directory changes.
type network struct {
	confDir  string
	binDirs  []string
	cacheDir string

	mu       sync.Mutex
	loadedAt time.Time // mtime of confDir at the last load
	list     *libcni.NetworkConfigList
	loadErr  error
	cni      *libcni.CNIConfig
	podCIDRs []string
}

func newNetwork(confDir string, binDirs []string, cacheDir string) *network {
	return &network{confDir: confDir, binDirs: binDirs, cacheDir: cacheDir,
		cni: libcni.NewCNIConfigWithCacheDir(binDirs, cacheDir, nil)}
}

// config returns the current network config, reloading it if the
// directory changed since the last look.
func (n *network) config() (*libcni.NetworkConfigList, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st, err := os.Stat(n.confDir)
	if err != nil {
		n.list, n.loadErr = nil, fmt.Errorf("CNI config directory %s: %w", n.confDir, err)
		return nil, n.loadErr
	}
	if n.list != nil && st.ModTime().Equal(n.loadedAt) {
		return n.list, nil
	}
	n.loadedAt = st.ModTime()
	n.list, n.loadErr = loadNetworkConfig(n.confDir)
	return n.list, n.loadErr
}

func loadNetworkConfig(dir string) (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	var errs []error
	for _, f := range files {
		var list *libcni.NetworkConfigList
		if strings.HasSuffix(f, ".conflist") {
			list, err = libcni.ConfListFromFile(f)
		} else {
			var conf *libcni.PluginConfig
			if conf, err = libcni.ConfFromFile(f); err == nil {
				list, err = libcni.ConfListFromConf(conf)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(f), err))
			continue
		}
		if len(list.Plugins) == 0 {
			errs = append(errs, fmt.Errorf("%s: no plugins", filepath.Base(f)))
			continue
		}
		return list, nil
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("no valid CNI network config in %s: %w", dir, errors.Join(errs...))
	}
	return nil, fmt.Errorf("no CNI network config found in %s", dir)
}

// status is the network half of the runtime's Status: ready when a config
// is loaded and the plugins' STATUS succeeds.
func (n *network) status(ctx context.Context) error {
	list, err := n.config()
	if err != nil {
		return err
	}
	if err := n.cni.GetStatusNetworkList(ctx, list); err != nil {
		return fmt.Errorf("network %s is not ready: %w", list.Name, err)
	}
	return nil
}

func (n *network) setPodCIDRs(cidrs []string) {
	n.mu.Lock()
	n.podCIDRs = cidrs
	n.mu.Unlock()
}

// runtimeConf is what libcni needs to attach or detach a pod.
func (n *network) runtimeConf(sb *Sandbox) *libcni.RuntimeConf {
	md := sb.Config.GetMetadata()
	rt := &libcni.RuntimeConf{
		ContainerID: sb.ID,
		NetNS:       sb.NetNS,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", md.GetNamespace()},
			{"K8S_POD_NAME", md.GetName()},
			{"K8S_POD_INFRA_CONTAINER_ID", sb.ID},
			{"K8S_POD_UID", md.GetUid()},
		},
		CapabilityArgs: map[string]any{},
	}
	var pms []map[string]any
	for _, pm := range sb.Config.GetPortMappings() {
		if pm.GetHostPort() <= 0 {
			continue
		}
		pms = append(pms, map[string]any{
			"hostPort": pm.GetHostPort(), "containerPort": pm.GetContainerPort(),
			"protocol": strings.ToLower(pm.GetProtocol().String()), "hostIP": pm.GetHostIp(),
		})
	}
	if len(pms) > 0 {
		rt.CapabilityArgs["portMappings"] = pms
	}
	n.mu.Lock()
	cidrs := n.podCIDRs
	n.mu.Unlock()
	if len(cidrs) > 0 {
		var ranges [][]map[string]string
		for _, c := range cidrs {
			ranges = append(ranges, []map[string]string{{"subnet": c}})
		}
		rt.CapabilityArgs["ipRanges"] = ranges
	}
	return rt
}

// setup attaches the pod and returns its IPs (IPv4 first).
func (n *network) setup(ctx context.Context, sb *Sandbox) ([]string, error) {
	list, err := n.config()
	if err != nil {
		return nil, fmt.Errorf("network not ready: %w", err)
	}
	res, err := n.cni.AddNetworkList(ctx, list, n.runtimeConf(sb))
	if err != nil {
		return nil, fmt.Errorf("attach pod to network %s: %w", list.Name, err)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("read the result of network %s: %w", list.Name, err)
	}
	var v4, v6 []string
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP.String())
		} else {
			v6 = append(v6, ip.Address.IP.String())
		}
	}
	return append(v4, v6...), nil
}

// teardown detaches the pod; the netns may be gone already.
func (n *network) teardown(ctx context.Context, sb *Sandbox) error {
	list, err := n.config()
	if err != nil {
		// Without a config nothing can be detached; the next GC with a
		// config releases what this pod held.
		return fmt.Errorf("detach pod: %w", err)
	}
	rt := n.runtimeConf(sb)
	if !netns.IsPinned(sb.NetNS) {
		rt.NetNS = ""
	}
	if err := n.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("detach pod from network %s: %w", list.Name, err)
	}
	return nil
}

// gc releases every attachment of the network that is not a live pod.
func (n *network) gc(ctx context.Context, live []*Sandbox) error {
	list, err := n.config()
	if err != nil {
		return err
	}
	args := &libcni.GCArgs{}
	for _, sb := range live {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: sb.ID, IfName: "eth0"})
	}
	return n.cni.GCNetworkList(ctx, list, args)
}

// NetworkStatus is nil when pods can be attached to the network.
func (m *Manager) NetworkStatus(ctx context.Context) error { return m.network.status(ctx) }

// SetPodCIDRs records the node's pod CIDRs (from UpdateRuntimeConfig); CNI
// gets them through the ipRanges capability.
func (m *Manager) SetPodCIDRs(cidrs []string) { m.network.setPodCIDRs(cidrs) }
