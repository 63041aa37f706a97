package image

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"
)

// Reference is a normalised image reference: docker.io/library/busybox:latest,
// registry.k8s.io/pause:3.10, 127.0.0.1:5000/x@sha256:... Names keep the form
// the user gave (the upstream registry), never the mirror that served them.
type Reference struct {
	// Domain is the registry as named, e.g. "docker.io" or "127.0.0.1:5000".
	Domain string
	// Path is the repository inside the registry, e.g. "library/busybox".
	Path string
	// Tag is empty only when Digest is set.
	Tag string
	// Digest is "sha256:<hex>" or empty.
	Digest string
}

// Name is the repository name with its domain: docker.io/library/busybox.
func (r Reference) Name() string { return r.Domain + "/" + r.Path }

// String is the full normalised reference. A reference with both a tag and
// a digest keeps both; pulls use the digest.
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// The grammar is the one docker and containerd accept (distribution's
// reference package), written out here so that names normalise the same way
// kubelet and crictl expect.
var (
	domainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domainRE        = regexp.MustCompile(`^(?:` + domainComponent + `(?:\.` + domainComponent + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	tagRE           = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	sha256RE        = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	hex64RE         = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

const (
	defaultDomain = "docker.io"
	maxNameLength = 255
)

// ParseRef parses and normalises an image reference. "busybox" becomes
// docker.io/library/busybox:latest; a reference without tag or digest gets
// the tag "latest". Malformed references return an error wrapping
// errdefs.ErrInvalidArgument.
func ParseRef(s string) (Reference, error) {
	invalid := func(why string) (Reference, error) {
		return Reference{}, fmt.Errorf("invalid image reference %q: %s: %w", s, why, errdefs.ErrInvalidArgument)
	}
	if s == "" {
		return invalid("empty")
	}
	if hex64RE.MatchString(s) {
		// docker refuses these as names: they would shadow image IDs.
		return invalid("a 64-character hex string is an image ID, not a name")
	}
	var r Reference
	rest := s
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		r.Digest = rest[i+1:]
		rest = rest[:i]
		if !sha256RE.MatchString(r.Digest) {
			return invalid("digest must be sha256:<64 lowercase hex>")
		}
	}
	// A tag is after the last ':' that follows the last '/', so that a
	// registry port (host:5000/x) is not mistaken for one.
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i:], "/") {
		r.Tag = rest[i+1:]
		rest = rest[:i]
		if !tagRE.MatchString(r.Tag) {
			return invalid("bad tag")
		}
	}
	if rest == "" {
		return invalid("empty name")
	}
	domain, path := splitDomain(rest)
	if !domainRE.MatchString(domain) {
		return invalid("bad registry host")
	}
	if domain == "index.docker.io" {
		domain = defaultDomain
	}
	if domain == defaultDomain && !strings.Contains(path, "/") {
		path = "library/" + path
	}
	for _, c := range strings.Split(path, "/") {
		if !pathComponentRE.MatchString(c) {
			return invalid("bad repository path (lowercase letters, digits and . _ - separators)")
		}
	}
	r.Domain, r.Path = domain, path
	if len(r.Name()) > maxNameLength {
		return invalid("name longer than 255 characters")
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// splitDomain follows docker: the first component is a registry only if it
// looks like a host (has '.' or ':', is localhost, or has capitals, which a
// repository path may not).
func splitDomain(name string) (domain, path string) {
	i := strings.IndexByte(name, '/')
	if i < 0 {
		return defaultDomain, name
	}
	first := name[:i]
	if !strings.ContainsAny(first, ".:") && first != "localhost" && strings.ToLower(first) == first {
		return defaultDomain, name
	}
	return first, name[i+1:]
}
