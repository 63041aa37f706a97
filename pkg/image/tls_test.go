package image

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestPullTLSMirror checks that hosts.toml decides the scheme and trust of
// a mirror: https on a loopback address (which go-containerregistry would
// otherwise talk to over http), skip_verify, a CA file, and headers.
func TestPullTLSMirror(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var sawHeader atomic.Bool
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Mirror-Token") == "secret" {
			sawHeader.Store(true)
		}
		reg.ServeHTTP(w, r)
	}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted case's handshake errors
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	pushSrv := httptest.NewServer(reg)
	t.Cleanup(pushSrv.Close)
	push := &testRegistry{pushHost: strings.TrimPrefix(pushSrv.URL, "http://")}
	img := testImage(t, v1.Config{}, baseLayer(t))
	push.push(t, "secure/app:1", img)
	mirror := strings.TrimPrefix(tlsSrv.URL, "https://")

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc   string
		extra  string
		ok     bool
		header bool
	}{
		{desc: "untrusted certificate", extra: ""},
		{desc: "skip_verify", extra: "skip_verify = true", ok: true},
		{desc: "ca file", extra: fmt.Sprintf("ca = %q\n[host.%q.header]\nX-Mirror-Token = \"secret\"", caFile, "https://"+mirror), ok: true, header: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			sawHeader.Store(false)
			cfgDir := t.TempDir()
			d := filepath.Join(cfgDir, "secure.example.test")
			os.MkdirAll(d, 0o755)
			cfg := fmt.Sprintf("server = \"http://127.0.0.1:1\"\n[host.%q]\ncapabilities = [\"pull\", \"resolve\"]\n%s\n", "https://"+mirror, tc.extra)
			if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			s := newTestStore(t, Options{RegistryConfigDir: cfgDir})
			got, err := s.Pull(context.Background(), "secure.example.test/secure/app:1", nil)
			if !tc.ok {
				if err == nil {
					t.Fatal("pull from an untrusted mirror succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.RepoTags[0] != "secure.example.test/secure/app:1" {
				t.Errorf("RepoTags %v", got.RepoTags)
			}
			if sawHeader.Load() != tc.header {
				t.Errorf("header sent = %v, want %v", sawHeader.Load(), tc.header)
			}
		})
	}
}
