// Command webserver stands in for the web servers of the images critest runs
// (registry.k8s.io/e2e-test-images/nginx, .../httpd and
// gcr.io/k8s-staging-cri-tools/hostnet-nginx). The image decides the
// personality through the name the binary is installed under:
//
//   - nginx: re-executes itself so that /proc/self/cmdline reads
//     "nginx: master process ..." (the ContainerPID spec greps for it) while the
//     process name stays "nginx" (pidof nginx); writes /var/run/nginx.pid;
//     listens on every "listen N;" port of /etc/nginx/conf.d/*.conf, or 80.
//   - httpd: logs a line containing "httpd" and listens on 80.
//
// Both answer 200 on every path and exit 0 on SIGTERM, SIGINT or SIGQUIT, also
// as PID 1 (where the kernel drops signals that have no handler).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	nginxTitle  = "nginx: master process"
	nginxPID    = "/var/run/nginx.pid"
	nginxConfig = "/etc/nginx/conf.d"
)

func main() {
	exe, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	switch name := filepath.Base(exe); name {
	case "nginx":
		runNginx(exe)
	case "httpd":
		fmt.Fprintln(os.Stderr, "httpd: cri-shim stand-in for Apache httpd 2.4.39, listening on :80")
		serve("httpd", []int{80}, "<html><body><h1>It works!</h1></body></html>\n", nil)
	default:
		fatal(fmt.Errorf("unknown personality %q (install this binary as nginx or httpd)", name))
	}
}

func runNginx(exe string) {
	if !strings.HasPrefix(os.Args[0], nginxTitle) {
		// Like nginx's setproctitle: argv becomes a single title string. Exec
		// the real path, not /proc/self/exe, so the process name stays "nginx".
		title := nginxTitle + " " + strings.Join(os.Args, " ")
		fatal(syscall.Exec(exe, []string{title}, os.Environ()))
	}
	ports, err := nginxPorts(nginxConfig)
	if err != nil {
		fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(nginxPID), 0o755); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(nginxPID, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fatal(err)
	}
	page := "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n" +
		"<body><h1>Welcome to nginx!</h1></body></html>\n"
	serve("nginx", ports, page, func() { os.Remove(nginxPID) })
}

var listenRE = regexp.MustCompile(`(?m)^\s*listen\s+(?:[^\s;]*:)?(\d+)[^;]*;`)

// nginxPorts returns the ports of the "listen" directives in dir/*.conf, or
// 80 when there are none.
func nginxPorts(dir string) ([]int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range listenRE.FindAllStringSubmatch(string(b), -1) {
			p, err := strconv.Atoi(m[1])
			if err != nil || p <= 0 || p > 65535 {
				return nil, fmt.Errorf("%s: bad listen port %q", f, m[1])
			}
			seen[p] = true
		}
	}
	if len(seen) == 0 {
		return []int{80}, nil
	}
	ports := make([]int, 0, len(seen))
	for p := range seen {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	return ports, nil
}

func serve(name string, ports []int, page string, atExit func()) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Server", name)
		fmt.Fprint(w, page)
		fmt.Printf("%s - - [%s] %q 200 %d\n", r.RemoteAddr, time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700"),
			r.Method+" "+r.URL.RequestURI()+" "+r.Proto, len(page))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, len(ports))
	for _, p := range ports {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			fatal(err)
		}
		go func() { errc <- srv.Serve(l) }()
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGCHLD)
	for {
		select {
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				fatal(err)
			}
		case s := <-sigs:
			if s == syscall.SIGCHLD {
				reap()
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
			if atExit != nil {
				atExit()
			}
			os.Exit(0)
		}
	}
}

// reap collects orphans re-parented to us when we run as PID 1.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "webserver:", err)
	os.Exit(1)
}
