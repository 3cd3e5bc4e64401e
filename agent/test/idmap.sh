#!/bin/sh
# Verifies sbx-idmap on this host (needs root and a kernel with idmapped
# mounts): ownership shifts under dst, dst is read-only, and overlayfs accepts
# idmapped dirs as lowerdirs. Every mount made here is unmounted by path.
set -u
BIN=$(readlink -f "${1:-$(dirname "$0")/../build/sbx-idmap}")
BASE=100000
T=$(mktemp -d /tmp/sbx-idmap-test.XXXXXX)
chmod 755 "$T" # the userns root (host uid $BASE) must be able to traverse it
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi; }
cleanup() {
	for m in "$T/O/root" "$T/O/lower" "$T/M" "$T/d1" "$T/d2" "$T/dv"; do
		mountpoint -q "$m" && umount "$m"
	done
	rm -rf "$T"
}
trap cleanup EXIT

mkdir -p "$T/l1/sub" "$T/l2" "$T/d1" "$T/d2" "$T/U" "$T/W" "$T/M"
echo one >"$T/l1/a"
echo two >"$T/l2/b"
echo lower >"$T/l2/a" # shadowed by l1/a
chown 0:0 "$T/l1/a" "$T/l2/b"
chown 5:7 "$T/l1/sub"

if "$BIN" $BASE 65536 "$T/l1" "$T/d1" "$T/l2" "$T/d2"; then ok "sbx-idmap exits 0"; else bad "sbx-idmap exits 0"; fi
expect "uid 0 file appears as base" "$(stat -c %u:%g "$T/d1/a")" "$BASE:$BASE"
expect "uid 5/gid 7 dir appears shifted" "$(stat -c %u:%g "$T/d1/sub")" "$((BASE + 5)):$((BASE + 7))"
expect "second pair mapped too" "$(stat -c %u "$T/d2/b")" "$BASE"
expect "source ownership untouched" "$(stat -c %u "$T/l1/a")" "0"
if touch "$T/d1/new" 2>/dev/null; then bad "idmapped mount is read-only"; else ok "idmapped mount is read-only"; fi

chown $BASE:$BASE "$T/U" "$T/W"
if mount -t overlay overlay -o "lowerdir=$T/d1:$T/d2,upperdir=$T/U,workdir=$T/W" "$T/M"; then
	ok "overlay over idmapped lowerdirs mounts"
	expect "merged view: upper lower wins" "$(cat "$T/M/a")" "one"
	expect "merged view: ownership shifted" "$(stat -c %u "$T/M/b")" "$BASE"
	echo created >"$T/M/new"
	expect "file created in merged lands in upperdir" "$(cat "$T/U/new" 2>/dev/null)" "created"
	echo more >>"$T/M/b"
	expect "copy-up keeps shifted owner" "$(stat -c %u "$T/U/b" 2>/dev/null)" "$BASE"
	expect "copy-up leaves the layer untouched" "$(cat "$T/l2/b")" "two"
	# What a sandbox sees: root of a user namespace mapping 0 -> BASE.
	out=$(python3 - "$T/M" $BASE <<'PY'
import ctypes, os, sys
m, base = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe(); r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w2)
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        os._exit(2)
    os.write(w, b"x"); os.read(r2, 1)
    os.setgid(0); os.setuid(0)
    with open(m + "/fromns", "w") as f:
        f.write("ns\n")
    print(os.stat(m + "/a").st_uid, os.stat(m + "/fromns").st_uid, flush=True)
    os._exit(0)
os.close(w); os.close(r2)
if os.read(r, 1) == b"x":
    for f in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{f}", "w") as fh:
            fh.write(f"0 {base} 65536\n")
os.close(w2)
os.waitpid(pid, 0)
PY
)
	expect "inside the userns: layer file is uid 0, new file is uid 0" "$out" "0 0"
	expect "file created by userns root is host uid base in upper" "$(stat -c %u "$T/U/fromns" 2>/dev/null)" "$BASE"
	umount "$T/M"
else
	bad "overlay over idmapped lowerdirs mounts"
fi

"$BIN" $BASE 65536 "$T/l1" "$T/missing" 2>"$T/err"
expect "missing dst fails with exit 1" "$?" "1"
grep -q "move_mount" "$T/err" && ok "error names the step" || bad "error names the step"
"$BIN" $BASE 0 "$T/l1" "$T/d1" 2>/dev/null
expect "count 0 rejected" "$?" "1"
"$BIN" 4294967295 1 "$T/l1" "$T/d1" 2>/dev/null
expect "range past 2^32-1 rejected" "$?" "1"
"$BIN" $BASE 10 "$T/l1" 2>/dev/null
expect "odd pair count rejected" "$?" "1"

"$BIN" $BASE 10 --rw "$T/l1" 2>/dev/null
expect "--rw without a pair rejected" "$?" "1"

# --rw: a writable idmapped bind (volumes). A file made by the namespace's
# root (host uid BASE) lands on disk owned by uid 0, and shows as BASE on dst.
mkdir -p "$T/vol" "$T/dv"
if "$BIN" $BASE 65536 --rw "$T/vol" "$T/dv"; then ok "--rw exits 0"; else bad "--rw exits 0"; fi
if setpriv --reuid=$BASE --regid=$BASE --clear-groups sh -c "echo hi > '$T/dv/f'" 2>"$T/err"; then
	ok "uid BASE writes through the rw map"
else
	bad "uid BASE writes through the rw map ($(cat "$T/err"))"
fi
expect "written file is uid 0 on disk" "$(stat -c %u:%g "$T/vol/f" 2>/dev/null)" "0:0"
expect "written file is BASE on the map" "$(stat -c %u:%g "$T/dv/f" 2>/dev/null)" "$BASE:$BASE"
umount "$T/dv"

umount "$T/d1" "$T/d2"

# --overlay: the lowers, then the overlay over them, in one run; relative
# option paths resolve against the cwd (the sandbox dir in the server).
mkdir -p "$T/O/lower" "$T/O/up" "$T/O/wk" "$T/O/root"
chown $BASE:$BASE "$T/O/up" "$T/O/wk"
if (cd "$T/O" && "$BIN" $BASE 65536 "$T/l1" "$T/O/lower" --overlay "$T/O/root" "lowerdir=lower,upperdir=up,workdir=wk,volatile"); then
	ok "--overlay exits 0"
else
	bad "--overlay exits 0"
fi
expect "--overlay: merged view through the idmapped lower" "$(stat -c %u "$T/O/root/a" 2>/dev/null) $(cat "$T/O/root/a" 2>/dev/null)" "$BASE one"
grep -q " $T/O/root .* - overlay overlay .*volatile" /proc/self/mountinfo && ok "--overlay: options applied" || bad "--overlay: options applied"
mountpoint -q "$T/O/root" && umount "$T/O/root"
mountpoint -q "$T/O/lower" && umount "$T/O/lower"
(cd "$T/O" && "$BIN" $BASE 65536 "$T/l1" "$T/O/lower" --overlay "$T/O/root" "lowerdir=nothere,upperdir=up,workdir=wk") 2>"$T/err"
expect "--overlay with a bad lowerdir fails with exit 1" "$?" "1"
grep -q "mount overlay at" "$T/err" && ok "--overlay error names the step" || bad "--overlay error names the step"
mountpoint -q "$T/O/lower" && umount "$T/O/lower"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
