package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// libDirs are where the base image looks for shared objects on the host, in
// the dynamic loader's default order. A library is put at the same path in
// the image, where the loader (with no ld.so.cache) finds it too.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// sharedObjects returns the files the dynamic loader needs to run the ELF
// executable exe: image path -> host path. That is the interpreter at its
// PT_INTERP path and every DT_NEEDED library, recursively. A static
// executable needs none.
func sharedObjects(exe string) (map[string]string, error) {
	need := map[string]string{}
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return nil, fmt.Errorf("%s: read PT_INTERP: %w", exe, err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		need[interp] = interp
	}

	queue := []string{exe}
	seen := map[string]bool{}
	for len(queue) > 0 {
		file := queue[0]
		queue = queue[1:]
		libs, err := neededLibraries(file)
		if err != nil {
			return nil, err
		}
		for _, soname := range libs {
			if seen[soname] {
				continue
			}
			seen[soname] = true
			found := ""
			for _, d := range libDirs {
				p := path.Join(d, soname)
				if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
					found = p
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("%s needs %s, which is in none of %v", file, soname, libDirs)
			}
			need[found] = found
			queue = append(queue, found)
		}
	}
	return need, nil
}

func neededLibraries(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return libs, nil
}

// addHostFiles copies the host files (image path -> host path) into l. Paths
// that are the same host file after resolving symbolic links become hard
// links to the first of them, so the loader is stored once.
func addHostFiles(l *layerBuilder, files map[string]string) error {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	first := map[string]string{} // resolved host path -> image path
	for _, p := range paths {
		real, err := filepath.EvalSymlinks(files[p])
		if err != nil {
			return err
		}
		if target, ok := first[real]; ok {
			l.hardlink(p, target)
			continue
		}
		b, err := os.ReadFile(real)
		if err != nil {
			return err
		}
		l.file(p, 0o755, b)
		first[real] = p
	}
	return nil
}

// busyboxApplets lists the applets the busybox binary was built with.
func busyboxApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	sort.Strings(applets)
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list printed no applets", busybox)
	}
	return applets, nil
}

const (
	passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
`
	nsswitch = `passwd: files
group: files
shadow: files
hosts: files dns
networks: files
services: files
protocols: files
`
)

// busyboxBase is the layer every busybox-like image starts from: Debian's
// dynamically linked busybox with its shared objects, every applet a hard link
// in /bin, our pgrep and ipcs, users and groups, and /tmp 1777.
func busyboxBase(busybox string, progs map[string][]byte) (*layer, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("read busybox (install Debian's busybox package: hack/install-deps.sh): %w", err)
	}
	applets, err := busyboxApplets(busybox)
	if err != nil {
		return nil, err
	}
	libs, err := sharedObjects(busybox)
	if err != nil {
		return nil, err
	}

	l := newLayer()
	for _, d := range []string{"bin", "dev", "etc", "home", "lib", "proc", "sys", "usr/bin", "usr/sbin",
		"usr/local/bin", "var/spool/mail", "var/www", "var/run", "run"} {
		l.dir(d, 0o755, 0, 0)
	}
	l.dir("root", 0o700, 0, 0)
	l.dir("tmp", 0o1777, 0, 0)
	l.dir("var/tmp", 0o1777, 0, 0)

	l.file("bin/busybox", 0o755, bb)
	for _, a := range applets {
		l.hardlink("bin/"+a, "bin/busybox")
	}
	for _, name := range []string{"pgrep", "ipcs"} {
		l.file("bin/"+name, 0o755, progs[name])
	}
	if err := addHostFiles(l, libs); err != nil {
		return nil, err
	}

	l.file("etc/passwd", 0o644, []byte(passwd))
	l.file("etc/group", 0o644, []byte(group))
	l.file("etc/nsswitch.conf", 0o644, []byte(nsswitch))
	return l.build()
}
