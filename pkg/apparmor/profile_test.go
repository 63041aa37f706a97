package apparmor

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAppArmorDefaultProfileRules(t *testing.T) {
	text := (&Host{ProcDir: t.TempDir()}).DefaultProfile()
	for _, want := range []string{
		"profile cri-shim-default flags=(attach_disconnected,mediate_deleted) {",
		"  deny mount,",
		"  umount,",
		"  signal (send,receive) peer=cri-shim-default,",
		"  signal (receive) peer=unconfined,",
		// AppArmor 4 confines runc under a profile named runc: without
		// this, stopping a container fails with "permission denied".
		"peer={runc,crun,",
		"  ptrace (trace,tracedby,read,readby) peer=cri-shim-default,",
		"  deny /proc/* w,",
		"  deny /proc/{sysrq-trigger,kcore} rwklx,",
		"  deny /sys/kernel/security/** rwklx,",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("default profile lacks %q", want)
		}
	}
	// Self-contained: loads whether or not /etc/apparmor.d has tunables,
	// abstractions or abi files, with AppArmor 2.13 to 4.x parsers.
	for _, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "abi ") || strings.Contains(l, "include") || strings.Contains(l, "@{") {
			t.Errorf("default profile depends on the system's policy files: %q", line)
		}
	}
}

func TestAppArmorDefaultProfilePeers(t *testing.T) {
	tests := []struct {
		desc     string
		files    map[string]string // under proc/
		wantPeer string            // "" = no extra signal peer
	}{
		{desc: "cri-shim unconfined: no extra peer",
			files: map[string]string{"self/attr/apparmor/current": "unconfined\n"}},
		{desc: "cri-shim confined: its label (and so runc's) may signal containers",
			files:    map[string]string{"self/attr/apparmor/current": "cri-shim-daemon (enforce)\n"},
			wantPeer: "cri-shim-daemon"},
		{desc: "old kernels: attr/current",
			files:    map[string]string{"self/attr/current": "/usr/local/bin/cri-shim (complain)\n"},
			wantPeer: "/usr/local/bin/cri-shim"},
		{desc: "the AppArmor-specific file wins over the shared one",
			files: map[string]string{"self/attr/apparmor/current": "unconfined\n",
				"self/attr/current": "system_u:system_r:container_runtime_t:s0"}},
		{desc: "a stacked label is not written into a rule",
			files: map[string]string{"self/attr/apparmor/current": "a//&:ns:b (enforce)\n"}},
		{desc: "no attr files"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			proc := t.TempDir()
			for name, content := range tt.files {
				writeFile(t, filepath.Join(proc, name), content)
			}
			text := (&Host{ProcDir: proc}).DefaultProfile()
			var peers []string
			for _, line := range strings.Split(text, "\n") {
				l := strings.TrimSpace(line)
				if p, ok := strings.CutPrefix(l, "signal (receive) peer="); ok &&
					p != "unconfined," && !strings.HasPrefix(p, "{runc") {
					peers = append(peers, strings.TrimSuffix(p, ","))
				}
			}
			switch {
			case tt.wantPeer == "" && len(peers) != 0:
				t.Errorf("extra signal peers %q, want none", peers)
			case tt.wantPeer != "" && (len(peers) != 1 || peers[0] != tt.wantPeer):
				t.Errorf("extra signal peers %q, want [%q]", peers, tt.wantPeer)
			}
		})
	}
}

func TestAppArmorRenderProfileRejectsUnsafeNames(t *testing.T) {
	for _, name := range []string{"", "a b", "x{y}", "a,b", "*", "a//&b"} {
		if _, err := renderProfile(name, nil); err == nil {
			t.Errorf("renderProfile(%q) accepted a name that is not a plain profile name", name)
		}
	}
}

// TestAppArmorDefaultProfileParses compiles the default profile with
// apparmor_parser without loading it (--skip-kernel-load), which needs no
// AppArmor in the kernel: a syntax error in the template fails here.
func TestAppArmorDefaultProfileParses(t *testing.T) {
	parser, err := (&Host{}).parserPath()
	if err != nil {
		t.Skipf("apparmor_parser is not installed (apt-get install apparmor): %v", err)
	}
	proc := t.TempDir()
	writeFile(t, filepath.Join(proc, "self/attr/apparmor/current"), "cri-shim-daemon (enforce)\n")
	for desc, h := range map[string]*Host{
		"unconfined cri-shim": {ProcDir: t.TempDir()},
		"confined cri-shim":   {ProcDir: proc},
	} {
		t.Run(desc, func(t *testing.T) {
			// --skip-cache: never read or write the system's cache. The
			// system's parser.conf (feature pinning) applies, as on a node.
			cmd := exec.Command(parser, "--skip-kernel-load", "--skip-cache")
			cmd.Stdin = strings.NewReader(h.DefaultProfile())
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s --skip-kernel-load rejects the default profile: %v\n%s\nprofile:\n%s", parser, err, out, h.DefaultProfile())
			}
			if len(out) > 0 {
				t.Logf("%s: %s", parser, out)
			}
		})
	}
}
