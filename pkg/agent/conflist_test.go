package agent

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func prefixes(t *testing.T, l ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range l {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestBuildConflist(t *testing.T) {
	withCluster := func(l ...string) func(*ConflistOptions) {
		return func(o *ConflistOptions) {
			for _, s := range l {
				o.ClusterCIDRs = append(o.ClusterCIDRs, netip.MustParsePrefix(s))
			}
		}
	}
	tests := []struct {
		desc     string
		change   func(*ConflistOptions)
		podCIDRs []string
		// want is the compact JSON, or "" for no conflist.
		want    string
		wantErr string
	}{
		{
			desc:     "single stack: the documented shape",
			change:   withCluster("10.244.0.0/16"),
			podCIDRs: []string{"10.244.1.0/24"},
			want: `{"cniVersion":"1.1.0","name":"pods","plugins":[{"type":"cni-bridge","bridge":"cni0",` +
				`"subnet":"10.244.1.0/24","isDefaultGateway":true,"ipMasq":true,"clusterCIDR":"10.244.0.0/16",` +
				`"mtu":1500,"hairpinMode":true,"dataDir":"/var/lib/cni-bridge",` +
				`"capabilities":{"portMappings":true,"ipRanges":true}}]}`,
		},
		{
			desc:     "dual stack: subnet and clusterCIDR become lists, in the node's order",
			change:   withCluster("10.244.0.0/16", "fd00:10:244::/56"),
			podCIDRs: []string{"fd00:10:244:1::/64", "10.244.1.0/24"},
			want: `{"cniVersion":"1.1.0","name":"pods","plugins":[{"type":"cni-bridge","bridge":"cni0",` +
				`"subnet":["fd00:10:244:1::/64","10.244.1.0/24"],"isDefaultGateway":true,"ipMasq":true,` +
				`"clusterCIDR":["10.244.0.0/16","fd00:10:244::/56"],` +
				`"mtu":1500,"hairpinMode":true,"dataDir":"/var/lib/cni-bridge",` +
				`"capabilities":{"portMappings":true,"ipRanges":true}}]}`,
		},
		{
			desc: "flags: bridge, mtu, dataDir; no clusterCIDR leaves the key out",
			change: func(o *ConflistOptions) {
				o.Bridge, o.MTU, o.DataDir = "br-pods", 9000, "/srv/cni"
			},
			podCIDRs: []string{"10.1.2.0/24"},
			want: `{"cniVersion":"1.1.0","name":"pods","plugins":[{"type":"cni-bridge","bridge":"br-pods",` +
				`"subnet":"10.1.2.0/24","isDefaultGateway":true,"ipMasq":true,` +
				`"mtu":9000,"hairpinMode":true,"dataDir":"/srv/cni",` +
				`"capabilities":{"portMappings":true,"ipRanges":true}}]}`,
		},
		{
			desc:     "cniVersion 1.0.0 for runtimes with an older libcni (containerd 1.6)",
			change:   func(o *ConflistOptions) { o.CNIVersion = "1.0.0" },
			podCIDRs: []string{"10.244.1.0/24"},
			want: `{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"cni-bridge","bridge":"cni0",` +
				`"subnet":"10.244.1.0/24","isDefaultGateway":true,"ipMasq":true,` +
				`"mtu":1500,"hairpinMode":true,"dataDir":"/var/lib/cni-bridge",` +
				`"capabilities":{"portMappings":true,"ipRanges":true}}]}`,
		},
		{
			desc:     "cniVersion the agent does not write",
			change:   func(o *ConflistOptions) { o.CNIVersion = "0.4.0" },
			podCIDRs: []string{"10.244.1.0/24"},
			wantErr:  `cniVersion "0.4.0": want one of 1.1.0, 1.0.0`,
		},
		{
			desc:   "no podCIDR: no conflist",
			change: withCluster("10.244.0.0/16"),
		},
		{
			desc:     "podCIDR outside clusterCIDR is rejected by the plugin's parser",
			change:   withCluster("10.244.0.0/16"),
			podCIDRs: []string{"10.245.1.0/24"},
			wantErr:  "not inside clusterCIDR",
		},
		{
			desc:     "podCIDR too small for a pod",
			podCIDRs: []string{"10.244.1.0/31"},
			wantErr:  "too small",
		},
		{
			desc:     "bad MTU",
			change:   func(o *ConflistOptions) { o.MTU = 10 },
			podCIDRs: []string{"10.244.1.0/24"},
			wantErr:  "mtu",
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			o := DefaultConflistOptions()
			if tc.change != nil {
				tc.change(&o)
			}
			got, err := BuildConflist(o, prefixes(t, tc.podCIDRs...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if got != nil {
					t.Fatalf("got a conflist %s, want none", got)
				}
				return
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, got); err != nil {
				t.Fatalf("invalid JSON %s: %v", got, err)
			}
			if compact.String() != tc.want {
				t.Errorf("conflist\n got %s\nwant %s", compact.String(), tc.want)
			}
			if !bytes.HasSuffix(got, []byte("}\n")) {
				t.Errorf("conflist does not end in a newline")
			}
		})
	}
}

func TestParseCIDRs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "10.244.1.7/24", want: []string{"10.244.1.0/24"}},
		{in: " 10.244.1.0/24 , fd00::/64 ", want: []string{"10.244.1.0/24", "fd00::/64"}},
		{in: "10.0.0.0/24,10.1.0.0/24", wantErr: true},
		{in: "fd00::/64,fd01::/64", wantErr: true},
		{in: "10.0.0.0", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseCIDRs(strings.Split(tc.in, ","))
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseCIDRs(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !slices.Equal(got, prefixes(t, tc.want...)) {
			t.Errorf("ParseCIDRs(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func fileID(t *testing.T, path string) (ino uint64, mtime time.Time) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "10-cni-bridge.conflist")
	steps := []struct {
		data        string
		wantChanged bool
	}{
		{"one\n", true},  // new file, directory created
		{"one\n", false}, // unchanged: no write
		{"two\n", true},  // changed: replaced
	}
	var lastIno uint64
	var lastMtime time.Time
	for i, s := range steps {
		if i == 1 {
			// A write would show in the mtime even within one clock tick
			// of the first: make it visible.
			past := time.Now().Add(-time.Hour)
			if err := os.Chtimes(path, past, past); err != nil {
				t.Fatal(err)
			}
			lastIno, lastMtime = fileID(t, path)
		}
		changed, err := WriteFileAtomic(path, []byte(s.data), 0o644)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if changed != s.wantChanged {
			t.Errorf("step %d: changed = %v, want %v", i, changed, s.wantChanged)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != s.data {
			t.Fatalf("step %d: file holds %q (%v), want %q", i, got, err, s.data)
		}
		ino, mtime := fileID(t, path)
		if i == 1 && (ino != lastIno || !mtime.Equal(lastMtime)) {
			t.Errorf("unchanged content was rewritten: inode %d -> %d, mtime %v -> %v", lastIno, ino, lastMtime, mtime)
		}
		if i == 2 && ino == lastIno {
			t.Errorf("changed content kept inode %d: not written through a rename", ino)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
			t.Errorf("step %d: mode %v, want 0644", i, fi.Mode().Perm())
		}
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %v, want only the conflist (no temp files)", entries)
	}
}
