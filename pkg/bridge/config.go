package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/cri-shim/cri-shim/pkg/ipam"
)

// Defaults for fields a network config may leave out.
const (
	DefaultBridge  = "cni0"
	DefaultDataDir = "/var/lib/cni-bridge"
	DefaultMTU     = 1500
)

// NetConf is the plugin's entry in a network config list:
//
//	{"type":"cni-bridge","bridge":"cni0","subnet":"10.244.1.0/24","isDefaultGateway":true,
//	 "ipMasq":true,"clusterCIDR":"10.244.0.0/16","mtu":1500,"hairpinMode":true,
//	 "dataDir":"/var/lib/cni-bridge","capabilities":{"portMappings":true,"ipRanges":true}}
//
// subnet and clusterCIDR take a string or a list (dual-stack: one prefix per
// family).
type NetConf struct {
	types.PluginConf
	Bridge           string     `json:"bridge"`
	Subnet           prefixList `json:"subnet"`
	IsDefaultGateway bool       `json:"isDefaultGateway"`
	IPMasq           bool       `json:"ipMasq"`
	ClusterCIDR      prefixList `json:"clusterCIDR"`
	MTU              int        `json:"mtu"`
	HairpinMode      bool       `json:"hairpinMode"`
	DataDir          string     `json:"dataDir"`

	RuntimeConfig struct {
		PortMappings []PortMapping  `json:"portMappings,omitempty"`
		IPRanges     [][]rangeEntry `json:"ipRanges,omitempty"`
	} `json:"runtimeConfig"`

	// LegacyAttachments is the pre-1.1 name of cni.dev/valid-attachments
	// that libcni still sends.
	LegacyAttachments []types.GCAttachment `json:"cni.dev/attachments,omitempty"`
}

// PortMapping is one entry of the standard portMappings capability.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// rangeEntry is one entry of the standard ipRanges capability. Only subnet
// is honoured: cni-bridge hands out the whole subnet.
type rangeEntry struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
}

// prefixList decodes a JSON string or list of strings of CIDRs.
type prefixList []string

func (p *prefixList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = prefixList{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("must be a CIDR string or a list of CIDR strings")
	}
	*p = l
	return nil
}

// Config is a validated NetConf with everything the verbs need resolved.
type Config struct {
	NetConf
	// Ranges are the pod subnets, at most one per family, IPv4 first.
	Ranges []ipam.Range
	// Cluster holds the masquerade boundary per family (clusterCIDR, else
	// the pod subnet).
	Cluster      []netip.Prefix
	PortMappings []portMapping
}

type portMapping struct {
	hostPort, containerPort uint16
	proto                   uint8 // IPPROTO_*
	hostIP                  netip.Addr
}

// configError is a config problem: CNI code 7 unless code says otherwise.
func configError(format string, args ...any) error {
	return &Error{Code: types.ErrInvalidNetworkConfig, Err: fmt.Errorf(format, args...)}
}

var networkNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// ParseConfig decodes and validates a network config. needSubnet is false
// for DEL, GC and STATUS, which must work when the runtime no longer passes
// the subnet (ipRanges is not sent to STATUS and GC).
func ParseConfig(stdin []byte, needSubnet bool) (*Config, error) {
	var nc NetConf
	if err := json.Unmarshal(stdin, &nc); err != nil {
		return nil, &Error{Code: types.ErrDecodingFailure, Err: fmt.Errorf("decode network config: %w", err)}
	}
	c := &Config{NetConf: nc}
	if !networkNameRE.MatchString(c.Name) {
		return nil, configError("network name %q is invalid: it must match %s", c.Name, networkNameRE)
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if len(c.Bridge) > 15 || strings.ContainsAny(c.Bridge, "/ :\t\n") {
		return nil, configError("bridge name %q is not a valid interface name (at most 15 characters, no '/', ':' or spaces)", c.Bridge)
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 68 || c.MTU > 65535 {
		return nil, configError("mtu %d is out of range (68-65535)", c.MTU)
	}
	if !c.IPAM.IsEmpty() {
		return nil, &Error{Code: types.ErrUnsupportedField, Err: fmt.Errorf("ipam %q: cni-bridge does its own IPAM; remove the ipam section and set \"subnet\"", c.IPAM.Type)}
	}

	subnets, err := parsePrefixes("subnet", c.Subnet)
	if err != nil {
		return nil, err
	}
	if len(subnets) == 0 {
		if subnets, err = rangesFromCapability(c.RuntimeConfig.IPRanges); err != nil {
			return nil, err
		}
	}
	for _, s := range subnets {
		r, err := ipam.NewRange(s)
		if err != nil {
			return nil, configError("subnet: %v", err)
		}
		c.Ranges = append(c.Ranges, r)
	}
	if needSubnet && len(c.Ranges) == 0 {
		return nil, configError("no pod subnet: set \"subnet\" in the network config, or have the runtime pass the node's podCIDR through the ipRanges capability (runtimeConfig.ipRanges)")
	}

	clusters, err := parsePrefixes("clusterCIDR", c.ClusterCIDR)
	if err != nil {
		return nil, err
	}
	for _, r := range c.Ranges {
		cl, ok := sameFamily(clusters, r.Subnet)
		if !ok {
			cl = r.Subnet
		} else if !cl.Contains(r.Subnet.Addr()) || cl.Bits() > r.Subnet.Bits() {
			return nil, configError("subnet %s is not inside clusterCIDR %s", r.Subnet, cl)
		}
		c.Cluster = append(c.Cluster, cl)
	}

	for i, pm := range c.RuntimeConfig.PortMappings {
		m, err := parsePortMapping(pm)
		if err != nil {
			return nil, configError("runtimeConfig.portMappings[%d]: %v", i, err)
		}
		c.PortMappings = append(c.PortMappings, m)
	}
	return c, nil
}

// parsePrefixes parses a list of CIDRs with at most one per family, IPv4
// first.
func parsePrefixes(field string, l prefixList) ([]netip.Prefix, error) {
	var v4, v6 []netip.Prefix
	for _, s := range l {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, configError("%s %q is not a CIDR: %v", field, s, err)
		}
		if p.Addr().Is4() {
			v4 = append(v4, p.Masked())
		} else {
			v6 = append(v6, p.Masked())
		}
	}
	if len(v4) > 1 || len(v6) > 1 {
		return nil, configError("%s %v: at most one IPv4 and one IPv6 prefix", field, []string(l))
	}
	return append(v4, v6...), nil
}

func rangesFromCapability(sets [][]rangeEntry) ([]netip.Prefix, error) {
	var l prefixList
	for i, set := range sets {
		if len(set) == 0 {
			continue
		}
		if len(set) > 1 {
			return nil, &Error{Code: types.ErrUnsupportedField, Err: fmt.Errorf("runtimeConfig.ipRanges[%d] has %d ranges: cni-bridge takes one subnet per family", i, len(set))}
		}
		e := set[0]
		if e.RangeStart != "" || e.RangeEnd != "" || e.Gateway != "" {
			return nil, &Error{Code: types.ErrUnsupportedField, Err: fmt.Errorf("runtimeConfig.ipRanges[%d][0]: rangeStart, rangeEnd and gateway are not supported (cni-bridge uses the whole subnet, gateway = first address)", i)}
		}
		l = append(l, e.Subnet)
	}
	return parsePrefixes("runtimeConfig.ipRanges subnet", l)
}

func sameFamily(ps []netip.Prefix, p netip.Prefix) (netip.Prefix, bool) {
	for _, q := range ps {
		if q.Addr().Is4() == p.Addr().Is4() {
			return q, true
		}
	}
	return netip.Prefix{}, false
}

var protocols = map[string]uint8{"tcp": 6, "udp": 17, "sctp": 132}

func parsePortMapping(pm PortMapping) (portMapping, error) {
	if pm.HostPort < 1 || pm.HostPort > 65535 {
		return portMapping{}, fmt.Errorf("hostPort %d is out of range (1-65535)", pm.HostPort)
	}
	if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
		return portMapping{}, fmt.Errorf("containerPort %d is out of range (1-65535)", pm.ContainerPort)
	}
	proto := strings.ToLower(pm.Protocol)
	if proto == "" {
		proto = "tcp"
	}
	num, ok := protocols[proto]
	if !ok {
		return portMapping{}, fmt.Errorf("protocol %q is not one of tcp, udp, sctp", pm.Protocol)
	}
	m := portMapping{hostPort: uint16(pm.HostPort), containerPort: uint16(pm.ContainerPort), proto: num}
	if pm.HostIP != "" && pm.HostIP != "0.0.0.0" && pm.HostIP != "::" {
		ip, err := netip.ParseAddr(pm.HostIP)
		if err != nil {
			return portMapping{}, fmt.Errorf("hostIP %q is not an IP address", pm.HostIP)
		}
		m.hostIP = ip.Unmap()
	}
	return m, nil
}

// validAttachments returns the GC keep-list; a missing key means an empty
// list (cnitool gc sends none).
func (c *Config) validAttachments() map[ipam.Attachment]bool {
	valid := map[ipam.Attachment]bool{}
	for _, l := range [][]types.GCAttachment{c.ValidAttachments, c.LegacyAttachments} {
		for _, a := range l {
			valid[ipam.Attachment{ContainerID: a.ContainerID, IfName: a.IfName}] = true
		}
	}
	return valid
}
