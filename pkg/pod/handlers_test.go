package pod

import (
	"slices"
	"testing"

	"github.com/cri-shim/cri-shim/pkg/runtime"
)

// The handler table: "" and "runc" are the default runtime; a configured
// handler has its own binary and root; a handler no longer configured keeps
// its conventional root (its containers' state is still found).
func TestHandlerRuntimes(t *testing.T) {
	m := &Manager{cfg: Config{State: "/run/x"}, runc: &runtime.Runc{Binary: "runc", Root: "/run/x/runc"}}
	m.runtimes = map[string]*runtime.Runc{"": m.runc, DefaultHandler: m.runc,
		"crun": m.handlerRuntime("crun", Handler{Binary: "/usr/bin/crun"}),
		"kata": m.handlerRuntime("kata", Handler{Binary: "/opt/kata/bin/kata-runtime", Root: "/run/kata"})}
	for _, tc := range []struct {
		handler, binary, root string
		known                 bool
	}{
		{"", "runc", "/run/x/runc", true},
		{"runc", "runc", "/run/x/runc", true},
		{"crun", "/usr/bin/crun", "/run/x/runtimes/crun", true},
		{"kata", "/opt/kata/bin/kata-runtime", "/run/kata", true},
		{"gone", "gone", "/run/x/runtimes/gone", false},
	} {
		r := m.runtimeFor(tc.handler)
		if r.Binary != tc.binary || r.Root != tc.root || m.HasHandler(tc.handler) != tc.known {
			t.Errorf("handler %q: %s --root %s (known %v), want %s --root %s (%v)", tc.handler, r.Binary, r.Root,
				m.HasHandler(tc.handler), tc.binary, tc.root, tc.known)
		}
	}
	if got := m.runtimeOf(&Container{Handler: "crun"}); got != m.runtimes["crun"] {
		t.Errorf("a crun container's runtime is %+v", got)
	}
	var names []string
	for _, h := range m.HandlerRuntimes() {
		names = append(names, h.Name)
	}
	if want := []string{"", "crun", "kata", "runc"}; !slices.Equal(names, want) {
		t.Errorf("HandlerRuntimes = %q, want %q", names, want)
	}
}
