package bridge

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cri-shim/cri-shim/pkg/ipam"
)

func TestParseConfig(t *testing.T) {
	const head = `{"cniVersion":"1.1.0","name":"pods","type":"cni-bridge"`
	tests := []struct {
		desc       string
		extra      string
		needSubnet bool
		wantCode   uint // 0: no error
		wantMsg    string
		check      func(t *testing.T, c *Config)
	}{
		{desc: "issue's config", needSubnet: true,
			extra: `,"bridge":"cni0","subnet":"10.244.1.0/24","isDefaultGateway":true,"ipMasq":true,"clusterCIDR":"10.244.0.0/16","mtu":1500,"hairpinMode":true,"dataDir":"/var/lib/cni-bridge","capabilities":{"portMappings":true,"ipRanges":true}`,
			check: func(t *testing.T, c *Config) {
				if len(c.Ranges) != 1 || c.Ranges[0].Subnet.String() != "10.244.1.0/24" || c.Cluster[0].String() != "10.244.0.0/16" {
					t.Errorf("ranges %v cluster %v", c.Ranges, c.Cluster)
				}
			}},
		{desc: "defaults", extra: `,"subnet":"10.244.1.0/24"`, needSubnet: true,
			check: func(t *testing.T, c *Config) {
				if c.Bridge != "cni0" || c.MTU != 1500 || c.DataDir != DefaultDataDir || c.Cluster[0] != c.Ranges[0].Subnet {
					t.Errorf("defaults: bridge %q mtu %d dataDir %q cluster %v", c.Bridge, c.MTU, c.DataDir, c.Cluster)
				}
			}},
		{desc: "dual stack list, IPv6 first in input", needSubnet: true,
			extra: `,"subnet":["fd00::/64","10.244.1.0/24"],"clusterCIDR":["10.244.0.0/16","fd00::/56"]`,
			check: func(t *testing.T, c *Config) {
				if len(c.Ranges) != 2 || !c.Ranges[0].Subnet.Addr().Is4() || c.Cluster[1].String() != "fd00::/56" {
					t.Errorf("ranges %v cluster %v", c.Ranges, c.Cluster)
				}
			}},
		{desc: "subnet from ipRanges", needSubnet: true,
			extra: `,"runtimeConfig":{"ipRanges":[[{"subnet":"10.244.7.0/24"}],[{"subnet":"fd00:7::/64"}]]}`,
			check: func(t *testing.T, c *Config) {
				if len(c.Ranges) != 2 || c.Ranges[0].Subnet.String() != "10.244.7.0/24" {
					t.Errorf("ranges %v", c.Ranges)
				}
			}},
		{desc: "config subnet wins over ipRanges", needSubnet: true,
			extra: `,"subnet":"10.244.1.0/24","runtimeConfig":{"ipRanges":[[{"subnet":"10.244.7.0/24"}]]}`,
			check: func(t *testing.T, c *Config) {
				if c.Ranges[0].Subnet.String() != "10.244.1.0/24" {
					t.Errorf("ranges %v", c.Ranges)
				}
			}},
		{desc: "no subnet is fine for DEL", needSubnet: false},
		{desc: "no subnet for ADD", needSubnet: true, wantCode: 7, wantMsg: "ipRanges"},
		{desc: "port mappings", needSubnet: true,
			extra: `,"subnet":"10.0.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"UDP","hostIP":"192.168.1.1"},{"hostPort":81,"containerPort":81,"protocol":"","hostIP":"0.0.0.0"}]}`,
			check: func(t *testing.T, c *Config) {
				want := fmt.Sprint([]portMapping{{80, 8080, 17, mustAddr("192.168.1.1")}, {81, 81, 6, noAddr}})
				if got := fmt.Sprint(c.PortMappings); got != want {
					t.Errorf("port mappings %s, want %s", got, want)
				}
			}},
		{desc: "bad protocol", extra: `,"subnet":"10.0.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}`, wantCode: 7, wantMsg: `protocol "icmp"`},
		{desc: "bad hostIP", extra: `,"subnet":"10.0.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"x"}]}`, wantCode: 7, wantMsg: `hostIP "x"`},
		{desc: "container port", extra: `,"subnet":"10.0.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":70000}]}`, wantCode: 7, wantMsg: "containerPort 70000"},
		{desc: "bad network name", extra: `,"subnet":"10.0.0.0/24","name":"../etc"`, wantCode: 7, wantMsg: "network name"},
		{desc: "bridge name too long", extra: `,"subnet":"10.0.0.0/24","bridge":"abcdefghijklmnop"`, wantCode: 7, wantMsg: "bridge name"},
		{desc: "subnet of wrong JSON type", extra: `,"subnet":5`, wantCode: 6},
		{desc: "two ranges in one ipRanges set", extra: `,"runtimeConfig":{"ipRanges":[[{"subnet":"10.0.0.0/24"},{"subnet":"10.0.1.0/24"}]]}`, wantCode: 2, wantMsg: "one subnet per family"},
		{desc: "clusterCIDR smaller than subnet", extra: `,"subnet":"10.0.0.0/16","clusterCIDR":"10.0.0.0/24"`, wantCode: 7, wantMsg: "not inside clusterCIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c, err := ParseConfig([]byte(head+tt.extra+"}"), tt.needSubnet)
			if tt.wantCode != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Code != tt.wantCode || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("err = %v, want code %d containing %q", err, tt.wantCode, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestValidAttachments(t *testing.T) {
	c, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"b","ifname":"eth0"}]}`), false)
	if err != nil {
		t.Fatal(err)
	}
	v := c.validAttachments()
	if len(v) != 2 || !v[ipam.Attachment{ContainerID: "a", IfName: "eth0"}] || !v[ipam.Attachment{ContainerID: "b", IfName: "eth0"}] {
		t.Errorf("valid attachments = %v", v)
	}
}

func TestHostVethName(t *testing.T) {
	a := hostVethName(ipam.Attachment{ContainerID: "abc", IfName: "eth0"})
	b := hostVethName(ipam.Attachment{ContainerID: "abc", IfName: "eth1"})
	if len(a) != 15 || a == b || !isHostVethName(a) || a != hostVethName(ipam.Attachment{ContainerID: "abc", IfName: "eth0"}) {
		t.Errorf("names %q %q: want 15 characters, distinct per attachment, stable", a, b)
	}
	for _, other := range []string{"veth1234", "cbr", "cbrzzzzzzzzzzzz", "eth0"} {
		if isHostVethName(other) {
			t.Errorf("isHostVethName(%q) = true", other)
		}
	}
}

func TestParseAttachmentComment(t *testing.T) {
	net, a, ok := parseAttachmentComment(commentPrefix + attachmentComment("pods", ipam.Attachment{ContainerID: "c1", IfName: "eth0"}))
	if !ok || net != "pods" || a.ContainerID != "c1" || a.IfName != "eth0" {
		t.Errorf("round trip = %q %+v %v", net, a, ok)
	}
	for _, bad := range []string{"", "other net=pods id=c if=e", commentPrefix + "net=pods static", commentPrefix + "base"} {
		if _, _, ok := parseAttachmentComment(bad); ok {
			t.Errorf("parseAttachmentComment(%q) accepted", bad)
		}
	}
}
