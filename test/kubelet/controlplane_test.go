package kubelet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// controlPlane is etcd, kube-apiserver, kube-controller-manager (allocating
// node podCIDRs from clusterCIDR) and kube-scheduler in the hub namespace.
// Every client authenticates with one admin certificate (system:masters).
type controlPlane struct {
	e          *env
	dir        string
	kubeconfig string
	client     *kubernetes.Clientset
	rest       *rest.Config
	procs      []*proc
}

func (e *env) startControlPlane() *controlPlane {
	e.t.Helper()
	cp := &controlPlane{e: e, dir: filepath.Join(e.dir, "control-plane")}
	e.cp = cp
	os.MkdirAll(cp.dir, 0o755)
	pki, err := cp.writePKI()
	if err != nil {
		e.t.Fatalf("certificates: %v", err)
	}
	hub := []string{"nsenter", "--net=" + e.hubNS, "--"}

	// etcd 3.4 has no --unsafe-no-fsync: its data goes to a tmpfs.
	e.shm = filepath.Join("/dev/shm", "kubelet-e2e-"+e.id)
	os.MkdirAll(e.shm, 0o700)
	etcd := e.start("etcd", append(hub, config.etcd, "--name", "hub", "--data-dir", filepath.Join(e.shm, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "hub=http://127.0.0.1:2380", "--log-level", "warn"), nil)
	cp.procs = append(cp.procs, etcd)

	apiserver := e.start("kube-apiserver", append(hub, filepath.Join(config.kubeBin, "kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", hubIP, "--advertise-address", hubIP, "--secure-port", "6443",
		"--cert-dir", filepath.Join(cp.dir, "apiserver"),
		"--tls-cert-file", pki["apiserver.crt"], "--tls-private-key-file", pki["apiserver.key"],
		"--client-ca-file", pki["ca.crt"],
		"--kubelet-client-certificate", pki["admin.crt"], "--kubelet-client-key", pki["admin.key"],
		"--kubelet-preferred-address-types", "InternalIP,Hostname",
		"--service-cluster-ip-range", serviceCIDR,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pki["sa.pub"], "--service-account-signing-key-file", pki["sa.key"],
		"--authorization-mode", "RBAC", "--allow-privileged", "--profiling=false", "-v=1"), nil)
	cp.procs = append(cp.procs, apiserver)

	var err2 error
	cp.client, cp.rest, err2 = cp.newClient(pki)
	if err2 != nil {
		e.t.Fatal(err2)
	}
	e.waitFor(2*time.Minute, "kube-apiserver /readyz", apiserver, func() bool {
		body, err := cp.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(e.t.Context())
		return err == nil && strings.TrimSpace(string(body)) == "ok"
	})

	cp.procs = append(cp.procs, e.start("kube-controller-manager", append(hub, filepath.Join(config.kubeBin, "kube-controller-manager"),
		"--kubeconfig", cp.kubeconfig, "--authentication-kubeconfig", cp.kubeconfig, "--authorization-kubeconfig", cp.kubeconfig,
		"--leader-elect=false", "--bind-address", "127.0.0.1",
		"--allocate-node-cidrs", "--cluster-cidr", clusterCIDR, "--node-cidr-mask-size", "24",
		"--service-cluster-ip-range", serviceCIDR,
		"--root-ca-file", pki["ca.crt"], "--service-account-private-key-file", pki["sa.key"],
		"--use-service-account-credentials=false", "--node-monitor-grace-period", "20s", "-v=1"), nil))
	cp.procs = append(cp.procs, e.start("kube-scheduler", append(hub, filepath.Join(config.kubeBin, "kube-scheduler"),
		"--kubeconfig", cp.kubeconfig, "--authentication-kubeconfig", cp.kubeconfig, "--authorization-kubeconfig", cp.kubeconfig,
		"--leader-elect=false", "--bind-address", "127.0.0.1", "-v=1"), nil))

	// Pods need the namespace's default ServiceAccount (made by the
	// controller manager) before they can be created.
	e.waitFor(90*time.Second, "the default ServiceAccount", nil, func() bool {
		_, err := cp.client.CoreV1().ServiceAccounts("default").Get(e.t.Context(), "default", metav1.GetOptions{})
		return err == nil
	})
	return cp
}

func (cp *controlPlane) stop() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		cp.procs[i].stop(15 * time.Second)
	}
}

func (cp *controlPlane) newClient(pki map[string]string) (*kubernetes.Clientset, *rest.Config, error) {
	read := func(k string) []byte { b, _ := os.ReadFile(pki[k]); return b }
	cfg := &rest.Config{
		Host: "https://" + hubIP + ":6443",
		TLSClientConfig: rest.TLSClientConfig{
			CAData: read("ca.crt"), CertData: read("admin.crt"), KeyData: read("admin.key"),
		},
		Dial:    dialIn(cp.e.hubNS),
		QPS:     50,
		Burst:   100,
		Timeout: 30 * time.Second,
	}
	c, err := kubernetes.NewForConfig(cfg)
	return c, cfg, err
}

// kubectl runs kubectl in the hub with the admin kubeconfig.
func (cp *controlPlane) kubectl(stdin string, args ...string) (string, error) {
	argv := append([]string{"--net=" + cp.e.hubNS, "--", filepath.Join(config.kubeBin, "kubectl"), "--kubeconfig", cp.kubeconfig}, args...)
	cmd := exec.Command("nsenter", argv...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writePKI makes a CA, the API server's serving certificate, the admin
// client certificate and the service account key pair, and the admin
// kubeconfig. It returns the files by name.
func (cp *controlPlane) writePKI() (map[string]string, error) {
	dir := filepath.Join(cp.dir, "pki")
	os.MkdirAll(dir, 0o700)
	files := map[string]string{}
	write := func(name, typ string, der []byte) error {
		p := filepath.Join(dir, name)
		files[name] = p
		return os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
	}
	newKey := func() (*ecdsa.PrivateKey, []byte, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, err := x509.MarshalECPrivateKey(k)
		return k, der, err
	}
	now := time.Now().Add(-time.Hour)
	caKey, caKeyDER, err := newKey()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubelet-e2e-ca"},
		NotBefore: now, NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := write("ca.crt", "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if err := write("ca.key", "EC PRIVATE KEY", caKeyDER); err != nil {
		return nil, err
	}
	issue := func(name string, tmpl *x509.Certificate) error {
		k, kder, err := newKey()
		if err != nil {
			return err
		}
		tmpl.NotBefore, tmpl.NotAfter = now, now.Add(48*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := write(name+".crt", "CERTIFICATE", der); err != nil {
			return err
		}
		return write(name+".key", "EC PRIVATE KEY", kder)
	}
	if err := issue("apiserver", &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(hubIP), net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		DNSNames:    []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}}); err != nil {
		return nil, err
	}
	if err := issue("admin", &x509.Certificate{SerialNumber: big.NewInt(3),
		Subject:     pkix.Name{CommonName: "kubelet-e2e-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, err
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := write("sa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return nil, err
	}
	pub, _ := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err := write("sa.pub", "PUBLIC KEY", pub); err != nil {
		return nil, err
	}
	b64 := func(name string) string {
		b, _ := os.ReadFile(files[name])
		return base64.StdEncoding.EncodeToString(b)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://%s:6443
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
`, hubIP, b64("ca.crt"), b64("admin.crt"), b64("admin.key"))
	cp.kubeconfig = filepath.Join(cp.dir, "admin.kubeconfig")
	return files, os.WriteFile(cp.kubeconfig, []byte(kc), 0o600)
}
