package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cri-shim/cri-shim/pkg/atomicfile"
	"github.com/cri-shim/cri-shim/pkg/bridge"
)

// Defaults of the conflist the agent writes (DESIGN.md §7).
const (
	DefaultNetworkName  = "pods"
	DefaultConflistName = "10-cni-bridge.conflist"
	// DefaultCNIVersion 1.1.0 makes libcni send STATUS and GC to the
	// plugin; older versions skip both.
	DefaultCNIVersion = "1.1.0"
)

// CNIVersions are the cniVersion values the agent writes: 1.1.0, and 1.0.0
// for runtimes whose libcni knows no CNI 1.1 (containerd 1.6 links libcni
// 1.1.x, which rejects a 1.1.0 result: "unsupported CNI result version").
var CNIVersions = []string{"1.1.0", "1.0.0"}

// ConflistOptions are the node-independent fields of the network config.
type ConflistOptions struct {
	// CNIVersion is the conflist's cniVersion, one of CNIVersions.
	CNIVersion  string
	NetworkName string
	Bridge      string
	MTU         int
	DataDir     string
	// ClusterCIDRs is the masquerade boundary, at most one per family;
	// empty leaves clusterCIDR out (the plugin then uses the pod subnet).
	ClusterCIDRs []netip.Prefix
}

// DefaultConflistOptions returns the documented defaults.
func DefaultConflistOptions() ConflistOptions {
	return ConflistOptions{
		CNIVersion:  DefaultCNIVersion,
		NetworkName: DefaultNetworkName,
		Bridge:      bridge.DefaultBridge,
		MTU:         bridge.DefaultMTU,
		DataDir:     bridge.DefaultDataDir,
	}
}

// The JSON shape other tools rely on: field order matches DESIGN.md §7.
type conflist struct {
	CNIVersion string       `json:"cniVersion"`
	Name       string       `json:"name"`
	Plugins    []pluginConf `json:"plugins"`
}

type pluginConf struct {
	Type             string       `json:"type"`
	Bridge           string       `json:"bridge"`
	Subnet           stringOrList `json:"subnet"`
	IsDefaultGateway bool         `json:"isDefaultGateway"`
	IPMasq           bool         `json:"ipMasq"`
	ClusterCIDR      stringOrList `json:"clusterCIDR,omitempty"`
	MTU              int          `json:"mtu"`
	HairpinMode      bool         `json:"hairpinMode"`
	DataDir          string       `json:"dataDir"`
	Capabilities     capabilities `json:"capabilities"`
}

type capabilities struct {
	PortMappings bool `json:"portMappings"`
	IPRanges     bool `json:"ipRanges"`
}

// stringOrList encodes one element as a plain string (the single-stack
// shape every existing tool reads) and several as a list (dual-stack).
type stringOrList []string

func (s stringOrList) MarshalJSON() ([]byte, error) {
	if len(s) == 1 {
		return json.Marshal(s[0])
	}
	return json.Marshal([]string(s))
}

// BuildConflist returns the network config list for a node whose pod
// subnets are podCIDRs. With no podCIDR it returns nil and no error: the
// caller then writes nothing, so the runtime reports NetworkReady=false
// instead of handing pods a config that cannot allocate addresses.
//
// The result is checked with the plugin's own parser, so a podCIDR outside
// clusterCIDR or too small for a pod is an error here and not a failure of
// every pod on the node.
func BuildConflist(o ConflistOptions, podCIDRs []netip.Prefix) ([]byte, error) {
	if len(podCIDRs) == 0 {
		return nil, nil
	}
	p := pluginConf{
		Type:             "cni-bridge",
		Bridge:           o.Bridge,
		IsDefaultGateway: true,
		IPMasq:           true,
		MTU:              o.MTU,
		HairpinMode:      true,
		DataDir:          o.DataDir,
		Capabilities:     capabilities{PortMappings: true, IPRanges: true},
	}
	for _, c := range podCIDRs {
		p.Subnet = append(p.Subnet, c.Masked().String())
	}
	for _, c := range o.ClusterCIDRs {
		p.ClusterCIDR = append(p.ClusterCIDR, c.Masked().String())
	}
	if !slices.Contains(CNIVersions, o.CNIVersion) {
		return nil, fmt.Errorf("cniVersion %q: want one of %s", o.CNIVersion, strings.Join(CNIVersions, ", "))
	}
	if err := validatePlugin(o.CNIVersion, o.NetworkName, p); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(conflist{CNIVersion: o.CNIVersion, Name: o.NetworkName, Plugins: []pluginConf{p}}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode conflist: %w", err)
	}
	return append(out, '\n'), nil
}

// validatePlugin parses the plugin entry the way libcni hands it to the
// plugin (name and cniVersion injected) with the plugin's own parser.
func validatePlugin(cniVersion, name string, p pluginConf) error {
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode plugin config: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("decode plugin config: %w", err)
	}
	m["name"], m["cniVersion"] = name, cniVersion
	if raw, err = json.Marshal(m); err != nil {
		return fmt.Errorf("encode plugin config: %w", err)
	}
	if _, err := bridge.ParseConfig(raw, true); err != nil {
		return fmt.Errorf("cni-bridge would reject the generated config: %w", err)
	}
	return nil
}

// ParseCIDRs parses CIDR strings (a node's spec.podCIDRs, or a flag split
// at commas; blanks are skipped) into masked prefixes, keeping their order
// and allowing at most one per family.
func ParseCIDRs(l []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var seen4, seen6 bool
	for _, s := range l {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %w", s, err)
		}
		seen := &seen6
		if p.Addr().Is4() {
			seen = &seen4
		}
		if *seen {
			return nil, fmt.Errorf("%v: at most one IPv4 and one IPv6 CIDR", l)
		}
		*seen = true
		out = append(out, p.Masked())
	}
	return out, nil
}

// WriteFileAtomic makes path hold data, and reports whether it wrote. An
// identical file is left alone (no new mtime or inode: the runtime and
// anything watching the directory see no change). Otherwise data goes to a
// temp file in the same directory (ending in ".tmp", which libcni does not
// load), is fsynced, and renamed over path (pkg/atomicfile), so a reader
// sees the old or the new file and never a partial one.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) (changed bool, err error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := atomicfile.Write(path, data, perm); err != nil {
		return false, err
	}
	return true, nil
}
