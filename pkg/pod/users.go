package pod

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// userDB is the image's /etc/passwd and /etc/group, read once per container
// from its rootfs (through os.Root: a symlinked /etc/passwd cannot make us
// read the host's).
type userDB struct {
	users  []passwdEntry
	groups []groupEntry
}

type passwdEntry struct {
	name     string
	uid, gid uint32
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

func readUserDB(rootfs string) userDB {
	var db userDB
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return db
	}
	defer root.Close()
	if f, err := root.Open("etc/passwd"); err == nil {
		db.users = parsePasswd(f)
		f.Close()
	}
	if f, err := root.Open("etc/group"); err == nil {
		db.groups = parseGroup(f)
		f.Close()
	}
	return db
}

func parsePasswd(r io.Reader) []passwdEntry {
	var out []passwdEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 == nil && err2 == nil {
			out = append(out, passwdEntry{f[0], uint32(uid), uint32(gid)})
		}
	}
	return out
}

func parseGroup(r io.Reader) []groupEntry {
	var out []groupEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		g := groupEntry{name: f[0], gid: uint32(gid)}
		if len(f) > 3 && f[3] != "" {
			g.members = strings.Split(f[3], ",")
		}
		out = append(out, g)
	}
	return out
}

func (db userDB) userByName(name string) (passwdEntry, bool) {
	for _, u := range db.users {
		if u.name == name {
			return u, true
		}
	}
	return passwdEntry{}, false
}

func (db userDB) userByUID(uid uint32) (passwdEntry, bool) {
	for _, u := range db.users {
		if u.uid == uid {
			return u, true
		}
	}
	return passwdEntry{}, false
}

func (db userDB) groupByName(name string) (groupEntry, bool) {
	for _, g := range db.groups {
		if g.name == name {
			return g, true
		}
	}
	return groupEntry{}, false
}

// memberOf returns the gids of the groups that list user as a member.
func (db userDB) memberOf(user string) []uint32 {
	var out []uint32
	for _, g := range db.groups {
		for _, m := range g.members {
			if m == user {
				out = append(out, g.gid)
			}
		}
	}
	return out
}

// identity is a resolved process identity.
type identity struct {
	uid, gid uint32
	name     string // empty when the uid has no passwd entry
}

// resolveUser turns a user spec ("1000", "1000:50", "www-data",
// "www-data:50", "www-data:staff") into numeric ids, the way Docker does:
// names must exist in the image; a numeric uid without a passwd entry gets
// gid 0 unless a group is given.
func (db userDB) resolveUser(spec string) (identity, error) {
	if spec == "" {
		return identity{name: "root"}, nil
	}
	user, group, hasGroup := strings.Cut(spec, ":")
	var id identity
	if n, err := strconv.ParseUint(user, 10, 32); err == nil {
		id.uid = uint32(n)
		if u, ok := db.userByUID(id.uid); ok {
			id.gid, id.name = u.gid, u.name
		}
	} else {
		u, ok := db.userByName(user)
		if !ok {
			return identity{}, fmt.Errorf("user %q is not in the image's /etc/passwd", user)
		}
		id = identity{uid: u.uid, gid: u.gid, name: u.name}
	}
	if hasGroup {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			id.gid = uint32(n)
		} else {
			g, ok := db.groupByName(group)
			if !ok {
				return identity{}, fmt.Errorf("group %q is not in the image's /etc/group", group)
			}
			id.gid = g.gid
		}
	}
	return id, nil
}
