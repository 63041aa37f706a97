package hosts

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		desc     string
		files    map[string]string // dir name -> hosts.toml
		noDir    bool
		registry string
		want     []Host
		wantErr  error
	}{
		{
			desc:     "missing config dir is the upstream default",
			noDir:    true,
			registry: "quay.io",
			want:     []Host{{Scheme: "https", Host: "quay.io", Path: "/v2", Capabilities: capAll}},
		},
		{
			desc:     "docker.io upstream is registry-1.docker.io",
			registry: "docker.io",
			want:     []Host{{Scheme: "https", Host: "registry-1.docker.io", Path: "/v2", Capabilities: capAll}},
		},
		{
			desc:     "loopback upstream is plain http",
			registry: "127.0.0.1:5000",
			want:     []Host{{Scheme: "http", Host: "127.0.0.1:5000", Path: "/v2", Capabilities: capAll}},
		},
		{
			desc: "mirrors in file order, then server",
			files: map[string]string{"docker.io": `
server = "https://registry-1.docker.io"
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
[host."https://b.example.com"]
  capabilities = ["pull"]
  skip_verify = true
[host."https://a.example.com/mirror"]
`},
			registry: "docker.io",
			want: []Host{
				{Scheme: "http", Host: "127.0.0.1:5000", Path: "/v2", Capabilities: CapPull | CapResolve},
				{Scheme: "https", Host: "b.example.com", Path: "/v2", Capabilities: CapPull, SkipVerify: true},
				{Scheme: "https", Host: "a.example.com", Path: "/mirror/v2", Capabilities: capAll},
				{Scheme: "https", Host: "registry-1.docker.io", Path: "/v2", Capabilities: capAll},
			},
		},
		{
			desc: "no server means the upstream default",
			files: map[string]string{"registry.k8s.io": `
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
`},
			registry: "registry.k8s.io",
			want: []Host{
				{Scheme: "http", Host: "127.0.0.1:5000", Path: "/v2", Capabilities: CapPull | CapResolve},
				{Scheme: "https", Host: "registry.k8s.io", Path: "/v2", Capabilities: capAll},
			},
		},
		{
			desc:     "server only, plain http",
			files:    map[string]string{"gcr.io": `server = "http://127.0.0.1:5000"`},
			registry: "gcr.io",
			want:     []Host{{Scheme: "http", Host: "127.0.0.1:5000", Path: "/v2", Capabilities: capAll}},
		},
		{
			desc: "_default applies to registries without a dir",
			files: map[string]string{
				"_default":  `[host."http://127.0.0.1:6000"]`,
				"other.com": `server = "https://other.com"`,
			},
			registry: "quay.io",
			want: []Host{
				{Scheme: "http", Host: "127.0.0.1:6000", Path: "/v2", Capabilities: capAll},
				{Scheme: "https", Host: "quay.io", Path: "/v2", Capabilities: capAll},
			},
		},
		{
			desc: "own dir wins over _default",
			files: map[string]string{
				"_default": `[host."http://127.0.0.1:6000"]`,
				"quay.io":  `server = "https://quay.example.com"`,
			},
			registry: "quay.io",
			want:     []Host{{Scheme: "https", Host: "quay.example.com", Path: "/v2", Capabilities: capAll}},
		},
		{
			desc:     "port in dir name",
			files:    map[string]string{"127.0.0.1:5000": `server = "https://127.0.0.1:5000"` + "\nskip_verify = true"},
			registry: "127.0.0.1:5000",
			want:     []Host{{Scheme: "https", Host: "127.0.0.1:5000", Path: "/v2", Capabilities: capAll, SkipVerify: true}},
		},
		{
			desc: "ca as path and list, relative to the dir; headers; override_path",
			files: map[string]string{"r.io": `
[host."https://m.io/custom/api"]
  ca = ["a.crt", "/etc/b.crt"]
  override_path = true
  client = [["c.pem", "k.pem"], "both.pem"]
  [host."https://m.io/custom/api".header]
    x-one = "1"
    x-two = ["a", "b"]
[host."https://n.io"]
  ca = "n.crt"
`},
			registry: "r.io",
			want: []Host{
				{Scheme: "https", Host: "m.io", Path: "/custom/api", Capabilities: capAll,
					CAs:     []string{"DIR/r.io/a.crt", "/etc/b.crt"},
					Clients: [][2]string{{"DIR/r.io/c.pem", "DIR/r.io/k.pem"}, {"DIR/r.io/both.pem", "DIR/r.io/both.pem"}},
					Header:  http.Header{"X-One": {"1"}, "X-Two": {"a", "b"}}},
				{Scheme: "https", Host: "n.io", Path: "/v2", Capabilities: capAll, CAs: []string{"DIR/r.io/n.crt"}},
				{Scheme: "https", Host: "r.io", Path: "/v2", Capabilities: capAll},
			},
		},
		{
			desc:     "bad scheme",
			files:    map[string]string{"r.io": `[host."ftp://m.io"]`},
			registry: "r.io",
			wantErr:  errdefs.ErrInvalidArgument,
		},
		{
			desc:     "unknown capability",
			files:    map[string]string{"r.io": `[host."https://m.io"]` + "\ncapabilities = [\"fly\"]"},
			registry: "r.io",
			wantErr:  errdefs.ErrInvalidArgument,
		},
		{
			desc:     "broken toml",
			files:    map[string]string{"r.io": `server = `},
			registry: "r.io",
			wantErr:  errdefs.ErrInvalidArgument,
		},
		{
			desc:     "registry with a slash",
			registry: "../etc",
			wantErr:  errdefs.ErrInvalidArgument,
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			for d, content := range tc.files {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, d, "hosts.toml"), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfgDir := dir
			if tc.noDir {
				cfgDir = filepath.Join(dir, "absent")
			}
			got, err := Resolve(cfgDir, tc.registry)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.want {
				for j, p := range tc.want[i].CAs {
					tc.want[i].CAs[j] = replaceDir(p, dir)
				}
				for j, c := range tc.want[i].Clients {
					tc.want[i].Clients[j] = [2]string{replaceDir(c[0], dir), replaceDir(c[1], dir)}
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func replaceDir(p, dir string) string {
	if len(p) > 3 && p[:4] == "DIR/" {
		return filepath.Join(dir, p[4:])
	}
	return p
}

func TestTLSConfig(t *testing.T) {
	if cfg, err := (Host{Scheme: "http"}).TLSConfig(); err != nil || cfg != nil {
		t.Fatalf("http host: cfg %v err %v", cfg, err)
	}
	cfg, err := (Host{Scheme: "https", SkipVerify: true}).TLSConfig()
	if err != nil || !cfg.InsecureSkipVerify {
		t.Fatalf("skip_verify: cfg %+v err %v", cfg, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.crt")
	if err := os.WriteFile(bad, []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Host{Scheme: "https", CAs: []string{bad}}).TLSConfig(); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad CA: err = %v", err)
	}
}
