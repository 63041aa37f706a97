package image

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseRef(t *testing.T) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		in      string
		want    string // normalised String(); empty means an error is expected
		name    string
		tag     string
		digest  string
		invalid bool
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest", name: "docker.io/library/busybox", tag: "latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36", tag: "1.36"},
		{in: "library/busybox", want: "docker.io/library/busybox:latest"},
		{in: "docker.io/busybox", want: "docker.io/library/busybox:latest"},
		{in: "index.docker.io/library/busybox", want: "docker.io/library/busybox:latest"},
		{in: "user/app:v1", want: "docker.io/user/app:v1"},
		{in: "registry.k8s.io/pause:3.9", want: "registry.k8s.io/pause:3.9", name: "registry.k8s.io/pause"},
		{in: "registry.k8s.io/e2e-test-images/busybox:1.29-2", want: "registry.k8s.io/e2e-test-images/busybox:1.29-2"},
		{in: "127.0.0.1:5000/foo", want: "127.0.0.1:5000/foo:latest", name: "127.0.0.1:5000/foo"},
		{in: "localhost/foo:bar", want: "localhost/foo:bar"},
		{in: "localhost:5000/a/b/c", want: "localhost:5000/a/b/c:latest"},
		{in: "[::1]:5000/foo", want: "[::1]:5000/foo:latest"},
		{in: "Registry/foo", want: "Registry/foo:latest"},
		{in: "busybox@" + dgst, want: "docker.io/library/busybox@" + dgst, tag: "", digest: dgst},
		{in: "busybox:1@" + dgst, want: "docker.io/library/busybox:1@" + dgst, tag: "1", digest: dgst},
		{in: "a_b__c-d--e/x.y", want: "docker.io/a_b__c-d--e/x.y:latest"},
		{in: "a_b.c/x", invalid: true}, // a dot makes it a host, and hosts have no underscore
		{in: "", invalid: true},
		{in: "Busybox", invalid: true},
		{in: "busybox:", invalid: true},
		{in: "busybox:-x", invalid: true},
		{in: "busybox@sha256:abc", invalid: true},
		{in: "busybox@md5:0123456789abcdef0123456789abcdef", invalid: true},
		{in: "-x/y", invalid: true},
		{in: "x//y", invalid: true},
		{in: "x/y/", invalid: true},
		{in: "host:port/x", invalid: true},
		{in: "a b", invalid: true},
		{in: strings.Repeat("a", 64), invalid: true},
		{in: "busybox:" + strings.Repeat("t", 129), invalid: true},
		{in: "x/" + strings.Repeat("a", 260), invalid: true},
		{in: ":tag", invalid: true},
		{in: "@" + dgst, invalid: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRef(tc.in)
			if tc.invalid {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("ParseRef(%q) = %+v, %v; want InvalidArgument", tc.in, r, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRef(%q): %v", tc.in, err)
			}
			if r.String() != tc.want {
				t.Errorf("String() = %q, want %q", r.String(), tc.want)
			}
			if tc.name != "" && r.Name() != tc.name {
				t.Errorf("Name() = %q, want %q", r.Name(), tc.name)
			}
			if tc.tag != "" && r.Tag != tc.tag {
				t.Errorf("Tag = %q, want %q", r.Tag, tc.tag)
			}
			if r.Digest != tc.digest {
				t.Errorf("Digest = %q, want %q", r.Digest, tc.digest)
			}
		})
	}
}
