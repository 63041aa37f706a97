package pod

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCDIDevices(t *testing.T) {
	dev := func(names ...string) []*runtimeapi.CDIDevice {
		var out []*runtimeapi.CDIDevice
		for _, n := range names {
			out = append(out, &runtimeapi.CDIDevice{Name: n})
		}
		return out
	}
	for _, tc := range []struct {
		desc        string
		devices     []*runtimeapi.CDIDevice
		annotations map[string]string
		want        []string
		invalid     bool
	}{
		{"none", nil, nil, nil, false},
		{"the CRI field", dev("nvidia.com/gpu=0", "nvidia.com/gpu=1"), nil, []string{"nvidia.com/gpu=0", "nvidia.com/gpu=1"}, false},
		{"annotations (before kubelet 1.28)", nil, map[string]string{"cdi.k8s.io/plugin": "vendor.com/dev=a,vendor.com/dev=b"},
			[]string{"vendor.com/dev=a", "vendor.com/dev=b"}, false},
		{"both, without duplicates", dev("vendor.com/dev=a"), map[string]string{"cdi.k8s.io/plugin": "vendor.com/dev=a,vendor.com/dev=c"},
			[]string{"vendor.com/dev=a", "vendor.com/dev=c"}, false},
		{"other annotations are not devices", nil, map[string]string{"io.kubernetes.x": "vendor.com/dev=a"}, nil, false},
		{"not a qualified name", dev("gpu0"), nil, nil, true},
		{"a bad annotation value", nil, map[string]string{"cdi.k8s.io/plugin": "gpu0"}, nil, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := cdiDevices(&runtimeapi.ContainerConfig{CDIDevices: tc.devices, Annotations: tc.annotations})
			if tc.invalid {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("got %v %v, want InvalidArgument", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}
