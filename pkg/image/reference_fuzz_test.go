package image

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// FuzzParseRef checks ParseRef on arbitrary strings: it never panics, it
// refuses with errdefs.ErrInvalidArgument, and what it accepts is
// normalised: complete, within the name length, and a fixed point (parsing
// the normalised form gives the same reference, which is what lets a name
// stored in an image record find the image again).
func FuzzParseRef(f *testing.F) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, s := range []string{
		"busybox", "busybox:1.36", "library/busybox", "docker.io/busybox", "index.docker.io/library/busybox",
		"user/app:v1", "registry.k8s.io/pause:3.10", "registry.k8s.io/e2e-test-images/busybox:1.29-2",
		"127.0.0.1:5000/foo", "localhost/foo:bar", "localhost:5000/a/b/c", "[::1]:5000/foo", "Registry/foo",
		"busybox@" + dgst, "busybox:1@" + dgst, "a_b__c-d--e/x.y", "a_b.c/x", "", "Busybox", "busybox:",
		"busybox@sha256:abc", "host:port/x", "x//y", ":tag", "@" + dgst, strings.Repeat("a", 64),
		"docker.io/library", "index.docker.io/x", "docker.io:443/x", "[::1]/x", "a/b:c:d", "a@b@c",
		"x/" + strings.Repeat("a", 250),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("ParseRef(%q): error without InvalidArgument: %v", s, err)
			}
			return
		}
		if r.Domain == "" || r.Path == "" || (r.Tag == "" && r.Digest == "") {
			t.Fatalf("ParseRef(%q) = %+v: incomplete", s, r)
		}
		if len(r.Name()) > maxNameLength {
			t.Fatalf("ParseRef(%q): name of %d characters", s, len(r.Name()))
		}
		if r.Digest != "" && validDigest(r.Digest) != nil {
			t.Fatalf("ParseRef(%q): digest %q", s, r.Digest)
		}
		again, err := ParseRef(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseRef(%q) = %+v, but its String %q parses to %+v, %v", s, r, r.String(), again, err)
		}
		byName, err := ParseRef(r.Name())
		if err != nil || byName.Domain != r.Domain || byName.Path != r.Path {
			t.Fatalf("ParseRef(%q): Name %q parses to %+v, %v", s, r.Name(), byName, err)
		}
		// Pinned references are normalised the same way.
		if _, err := pinKey(s); err != nil {
			t.Fatalf("pinKey(%q): %v", s, err)
		}
	})
}
