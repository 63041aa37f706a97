package image

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
)

// Auth is the credential a pull request carries (CRI AuthConfig).
type Auth struct {
	Username string
	Password string
	// Auth is base64("username:password"), as in docker's config.json.
	Auth          string
	IdentityToken string
	RegistryToken string
	// ServerAddress limits the credential to one registry. Empty means
	// any host tried for this pull.
	ServerAddress string
}

// authenticator returns what to present to host when pulling from the
// registry named domain (the upstream name in the image reference).
//
// Credentials go to every host tried for the image when ServerAddress is
// empty or names the upstream registry: the mirrors in hosts.toml are the
// operator's stand-ins for that registry (containerd does the same). A
// ServerAddress naming another host limits them to that host.
func (a *Auth) authenticator(domain, host string) (authn.Authenticator, error) {
	if a == nil || (a.Username == "" && a.Password == "" && a.Auth == "" && a.IdentityToken == "" && a.RegistryToken == "") {
		return authn.Anonymous, nil
	}
	if a.ServerAddress != "" {
		server := serverHost(a.ServerAddress)
		if server != registryAlias(domain) && server != registryAlias(host) {
			return authn.Anonymous, nil
		}
	}
	cfg := authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	}
	if a.Auth != "" && a.Username == "" {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a.Auth))
		if err != nil {
			return nil, fmt.Errorf("auth field is not base64: %w", errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, fmt.Errorf("auth field is not username:password: %w", errdefs.ErrInvalidArgument)
		}
		cfg.Username, cfg.Password = user, pass
	}
	return authn.FromConfig(cfg), nil
}

// serverHost reduces "https://index.docker.io/v1/" and friends to a host.
func serverHost(s string) string {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return registryAlias(u.Host)
}

func registryAlias(host string) string {
	switch host {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io"
	}
	return host
}

// fingerprint distinguishes credentials in shared-work keys without keeping
// them in memory in the clear.
func (a *Auth) fingerprint() string {
	if a == nil {
		return "anonymous"
	}
	h := sha256.New()
	for _, s := range []string{a.Username, a.Password, a.Auth, a.IdentityToken, a.RegistryToken, a.ServerAddress} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
