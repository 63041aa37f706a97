package bridge

import "net/netip"

var noAddr netip.Addr

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
