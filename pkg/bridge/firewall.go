package bridge

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/cri-shim/cri-shim/pkg/ipam"
)

// The firewall is one nftables table owned by cni-bridge:
//
//	table inet cni_bridge {
//	  chain guard       { type filter hook prerouting priority mangle
//	                      iifname <bridge> ip daddr 127.0.0.0/8 drop }       # per bridge
//	  chain prerouting  { type nat hook prerouting priority dstnat
//	                      fib daddr type local jump hostports }
//	  chain output      { type nat hook output priority dstnat
//	                      fib daddr type local jump hostports }
//	  chain hostports   { <per attachment> [ip daddr <hostIP>] <proto> dport <hostPort> dnat to <pod>:<port> }
//	  chain postrouting { type nat hook postrouting priority srcnat
//	                      ct status dnat ip saddr <subnet> masquerade          # hairpin: pod -> its own hostPort
//	                      ct status dnat ip saddr 127.0.0.0/8 masquerade       # localhost -> hostPort
//	                      ip saddr <subnet> ip daddr != <cluster> masquerade } # ipMasq
//	}
//
// Every rule carries a comment (nft userdata): "cni-bridge net=<network>" plus
// "id=<containerID> if=<ifname>" for per-attachment rules, so DEL and GC
// remove exactly theirs and `nft list ruleset` shows who owns what.
//
// Localhost -> hostPort needs route_localnet on the bridge; the guard rule
// drops what that would otherwise let in: packets from pods to 127/8 (the
// kube-proxy CVE-2020-8558 fault).
const (
	tableName       = "cni_bridge"
	chainGuard      = "guard"
	chainPrerouting = "prerouting"
	chainOutput     = "output"
	chainHostports  = "hostports"
	chainPost       = "postrouting"
	commentPrefix   = "cni-bridge "
)

type firewall struct {
	conn  *nftables.Conn
	table *nftables.Table
	gen   *netlink.Conn // for the generation ID (listRules)
}

func openFirewall() (*firewall, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	// Both sockets now, on this thread: they belong to its network namespace.
	gen, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("open netfilter netlink: %w", err)
	}
	return &firewall{conn: c, gen: gen, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}}, nil
}

func (f *firewall) close() {
	f.conn.CloseLasting()
	f.gen.Close()
}

func (f *firewall) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: f.table}
}

// ensureBase creates the table, its chains and the jumps in one atomic batch.
// The batch creates the table exclusively, so of concurrent first ADDs
// exactly one wins and the others see EEXIST, which is success.
func (f *firewall) ensureBase() error {
	if _, err := f.conn.ListTableOfFamily(tableName, nftables.TableFamilyINet); err == nil {
		return nil
	}
	f.conn.CreateTable(f.table)
	hooked := []struct {
		name string
		typ  nftables.ChainType
		hook *nftables.ChainHook
		prio *nftables.ChainPriority
	}{
		{chainGuard, nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityMangle},
		{chainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest},
		{chainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest},
		{chainPost, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource},
	}
	f.conn.AddChain(f.chain(chainHostports))
	for _, h := range hooked {
		f.conn.AddChain(&nftables.Chain{Name: h.name, Table: f.table, Type: h.typ, Hooknum: h.hook, Priority: h.prio})
	}
	for _, from := range []string{chainPrerouting, chainOutput} {
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: f.chain(from), UserData: comment("base"),
			Exprs: concat(matchFibLocalDst(), []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainHostports}})})
	}
	if err := f.conn.Flush(); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create nftables table %s: %w", tableName, err)
	}
	return nil
}

// staticRule is a rule that exists once per network (not per pod).
type staticRule struct {
	chain   string
	comment string
	exprs   []expr.Any
}

// staticRules are the per-network rules for c.
func staticRules(c *Config) []staticRule {
	net := "net=" + c.Name
	rules := []staticRule{{chainGuard, net + " guard " + c.Bridge,
		concat(matchIifname(c.Bridge), matchPrefix(false, netip.MustParsePrefix("127.0.0.0/8")), drop())}}
	rules = append(rules, staticRule{chainPost, net + " localhost-dnat",
		concat(matchCtDNAT(), matchPrefix(true, netip.MustParsePrefix("127.0.0.0/8")), masq())})
	for i, r := range c.Ranges {
		rules = append(rules, staticRule{chainPost, net + " hairpin " + r.Subnet.String(),
			concat(matchCtDNAT(), matchPrefix(true, r.Subnet), masq())})
		if c.IPMasq {
			multicast := netip.MustParsePrefix("224.0.0.0/4")
			if r.Subnet.Addr().Is6() {
				multicast = netip.MustParsePrefix("ff00::/8")
			}
			rules = append(rules, staticRule{chainPost, net + " masq " + r.Subnet.String() + " !" + c.Cluster[i].String(),
				concat(matchPrefix(true, r.Subnet), notPrefix(false, c.Cluster[i]), notPrefix(false, multicast), masq())})
		}
	}
	return rules
}

// ensureStatic adds the network's static rules that are missing. lock
// serialises concurrent ADDs of one network so a rule is added once; it is
// only taken when something is missing.
func (f *firewall) ensureStatic(c *Config, lock func() (unlock func(), err error)) error {
	want := staticRules(c)
	missing, err := f.missingStatic(want)
	if err != nil || len(missing) == 0 {
		return err
	}
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	if missing, err = f.missingStatic(want); err != nil || len(missing) == 0 {
		return err
	}
	for _, r := range missing {
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: f.chain(r.chain), UserData: comment(r.comment), Exprs: r.exprs})
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("add masquerade rules: %w", err)
	}
	return nil
}

func (f *firewall) missingStatic(want []staticRule) ([]staticRule, error) {
	have := map[string]bool{}
	for _, ch := range []string{chainGuard, chainPost} {
		rules, err := f.listRules(ch)
		if err != nil {
			return nil, fmt.Errorf("list nftables chain %s: %w", ch, err)
		}
		for _, r := range rules {
			have[ch+"\x00"+commentOf(r)] = true
		}
	}
	var missing []staticRule
	for _, w := range want {
		if !have[w.chain+"\x00"+commentPrefix+w.comment] {
			missing = append(missing, w)
		}
	}
	return missing, nil
}

func attachmentComment(network string, a ipam.Attachment) string {
	return fmt.Sprintf("net=%s id=%s if=%s", network, a.ContainerID, a.IfName)
}

// addHostports installs the DNAT rules of one attachment, replacing any it
// already has (a retried ADD), in one atomic batch.
func (f *firewall) addHostports(network string, a ipam.Attachment, mappings []portMapping, podIPs []netip.Addr) (int, error) {
	if err := f.deleteAttachmentRules(network, func(got ipam.Attachment) bool { return got == a }); err != nil {
		return 0, err
	}
	tag := comment(attachmentComment(network, a))
	n := 0
	for _, m := range mappings {
		for _, ip := range podIPs {
			if m.hostIP.IsValid() && m.hostIP.Is4() != ip.Is4() {
				continue // a hostIP of one family maps to the pod's address of that family
			}
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: f.chain(chainHostports), UserData: tag, Exprs: dnatExprs(m, ip)})
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := f.conn.Flush(); err != nil {
		return 0, fmt.Errorf("add hostPort rules: %w", err)
	}
	return n, nil
}

// deleteAttachmentRules removes the hostport rules of network whose
// attachment matches; a missing table is success (nothing to delete).
func (f *firewall) deleteAttachmentRules(network string, match func(ipam.Attachment) bool) error {
	rules, err := f.listRules(chainHostports)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list hostPort rules: %w", err)
	}
	n := 0
	for _, r := range rules {
		net, a, ok := parseAttachmentComment(commentOf(r))
		if ok && net == network && match(a) {
			if err := f.conn.DelRule(r); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("delete hostPort rules: %w", err)
	}
	return nil
}

// countAttachmentRules counts the hostport rules of one attachment (CHECK).
func (f *firewall) countAttachmentRules(network string, a ipam.Attachment) (int, error) {
	rules, err := f.listRules(chainHostports)
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("list hostPort rules: %w", err)
	}
	n := 0
	for _, r := range rules {
		if net, got, ok := parseAttachmentComment(commentOf(r)); ok && net == network && got == a {
			n++
		}
	}
	return n, nil
}

func parseAttachmentComment(c string) (network string, a ipam.Attachment, ok bool) {
	rest, found := strings.CutPrefix(c, commentPrefix)
	if !found {
		return "", a, false
	}
	for _, field := range strings.Fields(rest) {
		k, v, _ := strings.Cut(field, "=")
		switch k {
		case "net":
			network = v
		case "id":
			a.ContainerID = v
		case "if":
			a.IfName = v
		}
	}
	return network, a, network != "" && a.ContainerID != "" && a.IfName != ""
}

func comment(s string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, commentPrefix+s)
}

func commentOf(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// --- expressions -------------------------------------------------------

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func matchNfproto(is4 bool) []expr.Any {
	proto := byte(unix.NFPROTO_IPV6)
	if is4 {
		proto = unix.NFPROTO_IPV4
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// addrField loads the source or destination address of the packet.
func addrField(is4, src bool) *expr.Payload {
	off, n := uint32(16), uint32(4)
	switch {
	case is4 && src:
		off = 12
	case !is4 && src:
		off, n = 8, 16
	case !is4:
		off, n = 24, 16
	}
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

func prefixCmp(p netip.Prefix, src bool, op expr.CmpOp) []expr.Any {
	is4 := p.Addr().Is4()
	field := addrField(is4, src)
	out := concat(matchNfproto(is4), []expr.Any{field})
	if p.Bits() < p.Addr().BitLen() {
		mask := ipNet(p).Mask
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: field.Len, Mask: mask, Xor: make([]byte, field.Len)})
	}
	return append(out, &expr.Cmp{Op: op, Register: 1, Data: p.Addr().AsSlice()})
}

// matchPrefix matches the source (src) or destination address in p.
func matchPrefix(src bool, p netip.Prefix) []expr.Any { return prefixCmp(p, src, expr.CmpOpEq) }

// notPrefix matches a source (src) or destination address outside p.
func notPrefix(src bool, p netip.Prefix) []expr.Any {
	// The family match is already in the rule; drop the duplicate.
	return prefixCmp(p, src, expr.CmpOpNeq)[2:]
}

func matchIifname(name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

func matchFibLocalDst() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// matchCtDNAT matches connections whose destination was rewritten by DNAT.
func matchCtDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(0x20 /* IPS_DST_NAT */), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }
func drop() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }

func dnatExprs(m portMapping, pod netip.Addr) []expr.Any {
	is4 := pod.Is4()
	out := matchNfproto(is4)
	if m.hostIP.IsValid() {
		out = append(out, addrField(is4, false), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: m.hostIP.AsSlice()})
	}
	family := uint32(unix.NFPROTO_IPV6)
	if is4 {
		family = unix.NFPROTO_IPV4
	}
	return append(out,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{m.proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(m.hostPort)},
		&expr.Immediate{Register: 1, Data: pod.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(m.containerPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: family, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
}
