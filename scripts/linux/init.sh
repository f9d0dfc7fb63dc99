#!/bin/sh
# /init of Keel's Linux test guest (busybox-static; put there by scripts/linux/mkinitramfs).
# Prints on the console
#   KEEL-INIT cpus=<N> mem_kb=<MemTotal> uptime=<seconds>
#   KEEL-INIT check=ok            or   KEEL-INIT check=fail <reasons>
# N counts the "processor" lines of /proc/cpuinfo; uptime is /proc/uptime read first
# thing (under QEMU -icount: the virtual time at which /init was reached). The check
# compares with keel.cpus=N keel.mem_mb=M on the kernel command line: cpus must equal
# N and MemTotal must lie in [0.95*M - 64, M] MiB. The kernel keeps some RAM for itself:
# Debian's 6.1 keeps ~50 MiB whatever M is (its image, bss, reservations) plus ~1.6% of M
# (struct pages): MemTotal is 46 MiB at M=96, 204 MiB at M=256 (79.5%), 959 MiB at M=1024.
# Then it powers off (poweroff -f: ACPI S5, or Keel's power-off path) -- unless the command
# line has keel.reboot_once and Keel says this is the first boot (keel.boot=1, which Keel
# puts on every Linux guest's command line, counting its starts): then it reboots (-f).
# Disks (Keel's [[guest.disk]]s; the first is vda):
#   keel.disk=vda:SECTORS:SIG     a writable disk
#   keel.disk_ro=vdb:SECTORS:SIG  a read-only disk
# (any number of each). /init loads the virtio modules of /lib/modules, waits for
# /sys/block/<name>, checks its size (SECTORS of 512 bytes) and that sector 0 starts
# with SIG. A read-only disk must say ro and refuse a write. On a writable one, /init
# writes 8 MiB of a position-dependent pattern (seq -w: "0000000\n" ... "1048575\n")
# at 1 MiB, fsyncs (a virtio-blk FLUSH), drops the block device's page cache, reads it
# back and compares; from the second boot on (keel.boot > 1) it first checks that the
# pattern an earlier boot wrote is still there. One line per disk:
#   KEEL-INIT disk vda ok         or   KEEL-INIT disk vda fail <reason>
#   keel.disk_tag=C               (one letter) each pattern line that starts with "0" starts
#                                 with C instead ("a000000\n" ... "0999999\n" -> "a999999\n",
#                                 then "1000000\n" ... unchanged): two guests write different
#                                 data of the same size (tests/vm/linux_nvme.toml). A tag that
#                                 is not one letter fails every writable disk (bad-keel.disk_tag).
# A passed-through NVMe controller (Keel's [[guest.pci]], issue 13), after the disks:
#   keel.nvme=NAME:SECTOR:SIG     /init loads Linux's own NVMe driver (crct10dif_common ...
#                                 t10-pi, nvme-core, nvme), waits for /sys/block/NAME, checks
#                                 that sector SECTOR starts with SIG, writes the 8 MiB pattern
#                                 at 1 MiB (fsync: an NVMe Flush), drops the page cache, reads
#                                 it back and compares; then sums the interrupts of the
#                                 controller's queues (the nvme0qN lines of /proc/interrupts),
#                                 which must have arrived (more than 0).
#                                   KEEL-INIT nvme NAME ok interrupts=N msi=M link=SPEED (none: no PCIe capability)
#                                 (M: queues whose line says PCI-MSI, Linux 6.1's name for
#                                 MSI and MSI-X alike), or  ... fail <reason>
# Durability records (after the disk checks; tests/vm/linux_crash.toml, bench/crash_durability.py):
#   keel.records=vda:MAX          writes records 0..MAX-1 to vda, record N in the 4 KiB block
#                                 at 1 MiB + N * 4 KiB: "KEEL-REC N" padded with spaces to 63
#                                 bytes and "\n", 3968 bytes of `seq (N+1000)*1000 ...` , then
#                                 "md5 <md5 of the 4032 bytes before>" padded likewise (4096 in
#                                 all). Each is written with dd oflag=direct conv=fsync (the
#                                 write, then fsync: a virtio-blk FLUSH); only when dd has
#                                 returned does /init print
#                                   KEEL-REC N
#                                 then, after the last, KEEL-REC done MAX (or KEEL-REC fail <reason>).
#   keel.verify_records=vda:N     reads records from 0 on (O_DIRECT) and counts those intact
#                                 before the first that is not (or the disk's end); N (a count)
#                                 must be intact. One line:
#                                   KEEL-REC verify vda ok intact=M want=N
#                                 or  KEEL-REC verify vda fail intact=M want=N first_bad=<reason>
# Networking (after the disks; only if one of these words is there). eth0 is the first
# virtio-net device; /init loads failover, net_failover and virtio_net (after the virtio
# modules) and waits for it. MACs are written aa:bb:cc:dd:ee:ff (any case; lines print
# them in lower case). Every address is IPv6 link-local, fe80::/64 plus the modified
# EUI-64 of the MAC (02:00:00:00:00:01 -> fe80::ff:fe00:1), on eth0 (scope %eth0).
#   keel.mac=MAC          eth0's address (/sys/class/net/eth0/address) must be MAC:
#                         KEEL-INIT net mac ok              or  ... net mac fail <reason>
#   keel.peer=MAC         (any number) a neighbour that must answer. /init brings eth0 up
#                         with its link-local address (no DAD: accept_dad=0, so no delay),
#                         waits for carrier (/sys/class/net/eth0/carrier; bounded by
#                         keel.net_wait), then pings the peer once a second until it
#                         answers (the peer may still be booting: up to keel.net_wait),
#                         then pings it 3 times with each payload size 56, 512, 1000, 1400
#                         bytes: every reply must arrive (each within 10 s).
#                         KEEL-INIT net ping MAC ok         or  ... net ping MAC fail <reason>
#   keel.unreachable=MAC  (any number) must NOT answer: 2 pings get no reply (waiting 2 s
#                         after the second) and a TCP connect to its port 5001 fails.
#                         KEEL-INIT net isolated MAC ok     or  ... net isolated MAC fail <reason>
#   keel.tcp=server       receive one TCP connection on port 5001 (busybox nc -l, started
#                         in the background before the pings, so a client that pinged us
#                         finds it listening), then, after the pings, wait (up to
#                         keel.net_wait) for the sender to close; what came must be 4 MiB,
#                         the first half of the disk pattern (seq -w 0 1048575 | head -c 4M).
#                         KEEL-INIT net tcp ok bytes=<N> md5=<md5>  or  ... net tcp fail <reason>
#   keel.tcp=client:MAC   after the pings, send that 4 MiB to MAC's port 5001, retrying
#                         the connect (once a second, up to keel.net_wait) until it listens.
#                         KEEL-INIT net tcp sent ok md5=<md5>      or  ... net tcp sent fail <reason>
#   keel.net_wait=S       bound of each of those waits (default 120 s, for slow emulation;
#                         eth0's appearance and carrier are bounded by it too).
# eth0 is brought up only for keel.peer, keel.unreachable or keel.tcp (keel.mac alone just
# reads its address). If eth0 cannot be set up, every line of those says fail and why.
# Order: mac, (tcp server listens), ping each peer, isolated each, tcp; then always
#   KEEL-INIT net done
# Two guests that are each other's keel.peer, one keel.tcp=server and the other
# keel.tcp=client:<server's MAC>, both finish (started in either order within keel.net_wait).
#   keel.linger=S         after "net done", stay up S more seconds before going on (so a
#                         neighbour still pinging us finds us; two guests that only ping).
# At the very end, keel.stay: instead of powering off, print
#   KEEL-INIT staying up
# and stay up (init sleeps forever; for the interactive appliance). keel.reboot_once's
# reboot on the first boot still happens first.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
read -r up _ </proc/uptime
mount -t sysfs sysfs /sys

cpus=$(grep -c '^processor' /proc/cpuinfo)
mem_kb=
while read -r key value _; do
    [ "$key" = "MemTotal:" ] && { mem_kb=$value; break; }
done </proc/meminfo
echo "KEEL-INIT cpus=$cpus mem_kb=$mem_kb uptime=$up"

want_cpus=
want_mem=
boot=
reboot_once=
disks=
disk_tag= records= verify_records= nvme=
mac= peers= unreach= tcp= net_wait=120 net= stay= linger=
read -r cmdline </proc/cmdline
set -f
for word in $cmdline; do
    case $word in
        keel.cpus=*) want_cpus=${word#*=} ;;
        keel.mem_mb=*) want_mem=${word#*=} ;;
        keel.boot=*) boot=${word#*=} ;;
        keel.reboot_once) reboot_once=1 ;;
        keel.disk=*) disks="$disks rw:${word#*=}" ;;
        keel.disk_ro=*) disks="$disks ro:${word#*=}" ;;
        keel.disk_tag=*) disk_tag=${word#*=} bad_tag=1
            case $disk_tag in [A-Za-z]) bad_tag= ;; esac ;;
        keel.records=*) records=${word#*=} ;;
        keel.nvme=*) nvme=${word#*=} ;;
        keel.verify_records=*) verify_records=${word#*=} ;;
        keel.mac=*) mac=${word#*=} net=1 ;;
        keel.peer=*) peers="$peers ${word#*=}" net=1 ;;
        keel.unreachable=*) unreach="$unreach ${word#*=}" net=1 ;;
        keel.tcp=*) tcp=${word#*=} net=1 ;;
        keel.net_wait=*)
            net_wait=${word#*=}
            case $net_wait in '' | *[!0-9]*) net_wait=120 ;; esac
            ;;
        keel.stay) stay=1 ;;
        keel.linger=*) linger=${word#*=} ;;
    esac
done
set +f

why=
case $want_cpus in
    '' | *[!0-9]*) why="$why no-keel.cpus" ;;
    *) [ "$cpus" = "$want_cpus" ] || why="$why cpus=$cpus-expected-$want_cpus" ;;
esac
case $want_mem in
    '' | *[!0-9]*) why="$why no-keel.mem_mb" ;;
    *)
        lo=$((want_mem * 1024 * 95 / 100 - 64 * 1024))
        hi=$((want_mem * 1024))
        if [ -z "$mem_kb" ] || [ "$mem_kb" -lt "$lo" ] || [ "$mem_kb" -gt "$hi" ]; then
            why="$why mem_kb=$mem_kb-not-in-[$lo,$hi]"
        fi
        ;;
esac
if [ -z "$why" ]; then
    echo "KEEL-INIT check=ok"
else
    echo "KEEL-INIT check=fail$why"
fi

# The disk checks: one line per disk, ok or the first thing that went wrong.
load_virtio() {   # load_virtio LAST_MODULES...: the virtio ones, then these (dependency order)
    for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci "$@"; do
        [ -d /sys/module/$m ] || insmod /lib/modules/$m.ko || { echo "insmod-$m"; return; }
    done
    echo ok
}
pattern() {   # 8 MiB; keel.disk_tag=C: lines "0......" start with C instead
    [ -f /tmp/pattern ] && return
    if [ -n "$disk_tag" ]; then seq -w 0 1048575 | sed "s/^0/$disk_tag/" >/tmp/pattern
    else seq -w 0 1048575 >/tmp/pattern
    fi
}
blk_node() {   # blk_node NAME: waits for /sys/block/NAME (10 s), makes /dev/NAME; ok or the reason
    d=$1
    n=0
    while [ ! -e /sys/block/$d/dev ]; do
        n=$((n + 1))
        [ $n -le 100 ] || { echo "no-/sys/block/$d"; return; }
        sleep 0.1
    done
    IFS=: read -r major minor </sys/block/$d/dev
    [ -b /dev/$d ] || mknod /dev/$d b "$major" "$minor" || { echo "mknod"; return; }
    echo ok
}
check_disk() {
    mode=$1 d=$2 sectors=$3 want=$4
    r=$(blk_node "$d")
    [ "$r" = ok ] || { echo "$r"; return; }
    read -r size </sys/block/$d/size
    [ "$size" = "$sectors" ] || { echo "size-$size-not-$sectors"; return; }
    sig=$(dd if=/dev/$d bs=512 count=1 2>/dev/null | head -c ${#want})
    [ "$sig" = "$want" ] || { echo "signature-'$sig'"; return; }
    read -r ro </sys/block/$d/ro
    if [ "$mode" = ro ]; then
        [ "$ro" = 1 ] || { echo "not-read-only"; return; }
        if echo x | dd of=/dev/$d bs=512 count=1 conv=fsync 2>/dev/null; then echo "write-to-read-only-succeeded"; return; fi
        echo ok
        return
    fi
    [ "$ro" = 0 ] || { echo "read-only"; return; }
    [ -z "$bad_tag" ] || { echo "bad-keel.disk_tag=$disk_tag"; return; }
    pattern
    # A later start of the guest (a reboot) finds what the first one wrote: the disk outlives it.
    if [ -n "$boot" ] && [ "$boot" -gt 1 ]; then
        dd if=/dev/$d of=/tmp/kept bs=1M skip=1 count=8 2>/dev/null || { echo "read-kept"; return; }
        cmp -s /tmp/pattern /tmp/kept || { echo "boot-$boot-lost-the-pattern"; return; }
        rm -f /tmp/kept
    fi
    dd if=/tmp/pattern of=/dev/$d bs=1M seek=1 conv=fsync 2>/dev/null || { echo "write"; return; }
    blockdev --flushbufs /dev/$d || { echo "flushbufs"; return; }
    dd if=/dev/$d of=/tmp/back bs=1M skip=1 count=8 2>/dev/null || { echo "read-back"; return; }
    cmp -s /tmp/pattern /tmp/back || { echo "pattern-mismatch"; return; }
    rm -f /tmp/back
    echo ok
}
if [ -n "$disks" ]; then
    r=$(load_virtio virtio_blk)
    for spec in $disks; do
        mode=${spec%%:*} rest=${spec#*:}
        d=${rest%%:*} rest=${rest#*:}
        sectors=${rest%%:*} want=${rest#*:}
        [ "$r" = ok ] && r2=$(check_disk "$mode" "$d" "$sectors" "$want") || r2=$r
        if [ "$r2" = ok ]; then echo "KEEL-INIT disk $d ok"; else echo "KEEL-INIT disk $d fail $r2"; fi
    done
fi

# A passed-through NVMe controller (see the header): keel.nvme=NAME:SECTOR:SIG.
check_nvme() {
    d=$1 sector=$2 want=$3
    for m in crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic crc64-rocksoft t10-pi \
             nvme-core nvme; do
        [ -d /sys/module/$(echo $m | tr - _) ] || insmod /lib/modules/$m.ko 2>/tmp/insmod.err ||
            { echo "insmod-$m-$(head -c 120 /tmp/insmod.err | tr ' \n' '__')"; return; }
    done
    r=$(blk_node "$d")
    [ "$r" = ok ] || { echo "$r"; return; }
    sig=$(dd if=/dev/$d bs=512 skip="$sector" count=1 2>/dev/null | head -c ${#want})
    [ "$sig" = "$want" ] || { echo "signature-'$sig'"; return; }
    pattern
    dd if=/tmp/pattern of=/dev/$d bs=1M seek=1 conv=fsync 2>/dev/null || { echo "write"; return; }
    blockdev --flushbufs /dev/$d || { echo "flushbufs"; return; }
    dd if=/dev/$d of=/tmp/back bs=1M skip=1 count=8 2>/dev/null || { echo "read-back"; return; }
    cmp -s /tmp/pattern /tmp/back || { echo "pattern-mismatch"; return; }
    rm -f /tmp/back
    # The queues' interrupts: every CPU column of each nvme0qN line, summed.
    ctl=${d%n[0-9]*}
    set -- $(awk -v q="${ctl}q" '$NF ~ "^" q { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i; else break;
                                             lines++; if ($0 ~ /PCI-MSI/) msi++ }
                                  END { print n + 0, lines + 0, msi + 0 }' /proc/interrupts)
    [ "$2" -gt 0 ] || { echo "no-${ctl}q-in-/proc/interrupts"; return; }
    [ "$1" -gt 0 ] || { echo "no-interrupts"; return; }
    # The PCI Express capability Keel shows (read-only): sysfs has the link attributes only then.
    link=$(cat /sys/class/nvme/$ctl/device/current_link_speed 2>/dev/null | tr ' ' _)
    echo "ok interrupts=$1 msi=$3 link=${link:-none}"
}
if [ -n "$nvme" ]; then
    d=${nvme%%:*} rest=${nvme#*:}
    sector=${rest%%:*} want=${rest#*:}
    r=$(check_nvme "$d" "$sector" "$want")
    case $r in ok*) echo "KEEL-INIT nvme $d $r" ;; *) echo "KEEL-INIT nvme $d fail $r" ;; esac
fi

# Durability records (see the header): keel.records=DISK:MAX, keel.verify_records=DISK:N.
make_record() {   # make_record N: record N in /tmp/rec (4096 bytes)
    { printf '%-63s\n' "KEEL-REC $1"
      seq $(( ($1 + 1000) * 1000 )) $(( ($1 + 1000) * 1000 + 999 )) | head -c 3968; } >/tmp/rec.body
    md5=$(md5sum </tmp/rec.body | cut -d' ' -f1)
    { cat /tmp/rec.body; printf '%-63s\n' "md5 $md5"; } >/tmp/rec
}
REC_FIRST=256   # records start at 1 MiB (4 KiB blocks)
rec_setup() {   # rec_setup DISK:COUNT (in $(...)): ok, or why the records cannot go on DISK
    rec_disk=${1%%:*} rec_count=${1#*:}
    case $rec_count in '' | *[!0-9]*) echo "bad-count-$rec_count"; return ;; esac
    [ "$(load_virtio virtio_blk)" = ok ] || { echo "virtio-modules"; return; }
    r=$(blk_node "$rec_disk")
    [ "$r" = ok ] || { echo "$r"; return; }
    read -r size </sys/block/$rec_disk/size
    rec_slots=$(( size / 8 - REC_FIRST ))
    [ "$rec_slots" -gt 0 ] || { echo "disk-too-small-$size-sectors"; return; }
    echo ok
}
if [ -n "$records" ]; then
    r=$(rec_setup "$records")
    rec_disk=${records%%:*} rec_count=${records#*:}
    if [ "$r" = ok ]; then
        read -r size </sys/block/$rec_disk/size
        rec_slots=$(( size / 8 - REC_FIRST ))
        [ "$rec_count" -le "$rec_slots" ] || r="only-$rec_slots-records-fit"
    fi
    n=0
    while [ "$r" = ok ] && [ "$n" -lt "$rec_count" ]; do
        make_record $n
        # O_DIRECT: the write goes to the device; fsync: then a FLUSH. Only then the line.
        if dd if=/tmp/rec of=/dev/$rec_disk bs=4096 seek=$((REC_FIRST + n)) count=1 oflag=direct conv=notrunc,fsync 2>/tmp/dd.err; then
            echo "KEEL-REC $n"
        else
            r="record-$n-$(head -c 200 /tmp/dd.err | tr '\n' ' ')"
        fi
        n=$((n + 1))
    done
    if [ "$r" = ok ]; then echo "KEEL-REC done $rec_count"; else echo "KEEL-REC fail $r"; fi
fi
if [ -n "$verify_records" ]; then
    r=$(rec_setup "$verify_records")
    rec_disk=${verify_records%%:*} want=${verify_records#*:}
    intact=0 bad=
    if [ "$r" = ok ]; then
        read -r size </sys/block/$rec_disk/size
        rec_slots=$(( size / 8 - REC_FIRST ))
        while [ "$intact" -lt "$rec_slots" ]; do
            make_record $intact
            dd if=/dev/$rec_disk of=/tmp/got bs=4096 skip=$((REC_FIRST + intact)) count=1 iflag=direct 2>/dev/null || { bad="read-error-at-$intact"; break; }
            cmp -s /tmp/rec /tmp/got || { bad="record-$intact-$(head -c 20 /tmp/got | tr -c 'A-Za-z0-9-' '.')"; break; }
            intact=$((intact + 1))
        done
        [ -n "$bad" ] || bad="end-of-disk"
    else
        bad=$r
    fi
    if [ "$r" = ok ] && [ "$intact" -ge "$want" ]; then echo "KEEL-REC verify $rec_disk ok intact=$intact want=$want"
    else echo "KEEL-REC verify $rec_disk fail intact=$intact want=$want first_bad=$bad"
    fi
fi

# The network checks (see the header): one line per check, then "net done".
now() { read -r u _ </proc/uptime; echo "${u%.*}"; }
lower() { echo "$1" | tr A-F a-f; }
ll_of() {   # ll_of MAC: its IPv6 link-local address (modified EUI-64), as the kernel prints it
    case $1 in
        [0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]) ;;
        *) return 1 ;;
    esac
    o=$IFS IFS=:
    set -- $1
    IFS=$o
    a=$(( (0x$1 ^ 2) << 8 | 0x$2 )) b=$(( 0x$3 << 8 | 0xff )) c=$(( 0xfe00 | 0x$4 )) d=$(( 0x$5 << 8 | 0x$6 ))
    if [ $a = 0 ]; then printf 'fe80::%x:%x:%x\n' $b $c $d; else printf 'fe80::%x:%x:%x:%x\n' $a $b $c $d; fi
}
replies() {   # replies PING6_ARGS...: how many echo replies came back (0 if no statistics)
    n=$(timeout 40 ping6 "$@" 2>&1 | sed -n 's/.* \([0-9][0-9]*\) packets received.*/\1/p')
    echo "${n:-0}"
}
wait_eth0() {   # sets why_eth0 (empty: eth0 is there)
    why_eth0=
    r=$(load_virtio failover net_failover virtio_net)
    [ "$r" = ok ] || { why_eth0=$r; return; }
    end=$(( $(now) + net_wait ))
    while [ ! -e /sys/class/net/eth0/address ]; do
        [ "$(now)" -lt "$end" ] || { why_eth0="no-eth0-within-${net_wait}s"; return; }
        sleep 0.1
    done
}
eth0_up() {   # sets why_up (empty: eth0 is up, with its link-local address, and has carrier)
    why_up=$why_eth0
    [ -z "$why_up" ] || return
    read -r own_mac </sys/class/net/eth0/address
    own=$(ll_of "$own_mac") || { why_up="bad-eth0-address-$own_mac"; return; }
    c=/proc/sys/net/ipv6/conf/eth0
    # No automatic link-local address (we add it), no duplicate address detection (no delay).
    echo 1 >$c/addr_gen_mode 2>/dev/null
    echo 0 >$c/accept_dad && echo 0 >$c/dad_transmits || { why_up="no-ipv6-sysctls"; return; }
    ip link set eth0 up || { why_up="link-up"; return; }
    ip -6 addr add "$own/64" dev eth0 2>/dev/null
    ip -6 addr show dev eth0 | grep -q "inet6 $own/64" || { why_up="no-address-$own"; return; }
    end=$(( $(now) + net_wait ))
    while :; do
        read -r carrier </sys/class/net/eth0/carrier
        [ "$carrier" = 1 ] && break
        [ "$(now)" -lt "$end" ] || { why_up="no-carrier-within-${net_wait}s"; return; }
        sleep 0.1
    done
    if ip -6 addr show dev eth0 | grep -q tentative; then why_up="address-tentative"; fi
}
ping_peer() {   # ping_peer ADDR: ok or the reason
    end=$(( $(now) + net_wait ))
    # The first reply may take a while: the peer may still be booting, and neighbour
    # discovery comes first.
    until [ "$(replies -c 1 -W 2 "$1%eth0")" = 1 ]; do
        [ "$(now)" -lt "$end" ] || { echo "no-reply-within-${net_wait}s"; return; }
        sleep 1
    done
    # One ping6 per echo: with -c 3, busybox's ping6 would wait only about two round
    # trips (at least 1 s) for the last reply, which a busy emulated peer can miss.
    for size in 56 512 1000 1400; do
        for i in 1 2 3; do
            [ "$(replies -c 1 -W 10 -s $size "$1%eth0")" = 1 ] || { echo "size-$size-echo-$i-of-3-no-reply-within-10s"; return; }
        done
    done
    echo ok
}
check_isolated() {   # check_isolated ADDR: ok or the reason
    n=$(replies -c 2 -W 2 "$1%eth0")
    [ "$n" = 0 ] || { echo "ping-got-$n-replies"; return; }
    timeout 30 nc -w 5 "$1%eth0" 5001 </dev/null >/dev/null 2>&1
    rc=$?
    [ $rc -ge 1 ] && [ $rc -lt 128 ] || { echo "tcp-connect-exit-$rc"; return; }
    echo ok
}
tcp_pattern() { seq -w 0 1048575 | head -c 4194304 >/tmp/netpattern; md5sum </tmp/netpattern | cut -d' ' -f1; }
if [ -n "$net" ]; then
    wait_eth0
    if [ -n "$mac" ]; then
        mac=$(lower "$mac")
        if [ -n "$why_eth0" ]; then echo "KEEL-INIT net mac fail $why_eth0"
        else
            read -r got </sys/class/net/eth0/address
            if [ "$got" = "$mac" ]; then echo "KEEL-INIT net mac ok"; else echo "KEEL-INIT net mac fail eth0-is-$got"; fi
        fi
    fi
    if [ -n "$peers$unreach$tcp" ]; then
        eth0_up
        npeers=0
        for p in $peers; do npeers=$((npeers + 1)); done
        case $tcp in
            server)
                want_md5=$(tcp_pattern)
                rm -f /tmp/nc.pid /tmp/nc.rc /tmp/netgot /tmp/nc.in
                # Listen before pinging, so that a client that got our replies finds us
                # listening; the timeout is only a backstop (the wait below is the bound).
                # nc's input is a FIFO that never ends (opened read-write): at the end of
                # its input nc would half-close, and the client's nc, seeing that, would
                # stop sending. So nc ends when the client closes, and only then.
                if [ -z "$why_up" ] && mkfifo /tmp/nc.in; then
                    ( timeout $((net_wait * (npeers + 2) + 120)) nc -l -p 5001 <>/tmp/nc.in >/tmp/netgot 2>/tmp/nc.err &
                      echo $! >/tmp/nc.pid
                      wait $!
                      echo $? >/tmp/nc.rc ) &
                fi
                ;;
            client:*) tcp_pattern >/tmp/netpattern.md5 ;;
        esac
        for p in $peers; do
            p=$(lower "$p")
            if [ -n "$why_up" ]; then r=$why_up
            elif a=$(ll_of "$p"); then r=$(ping_peer "$a")
            else r="bad-mac"
            fi
            if [ "$r" = ok ]; then echo "KEEL-INIT net ping $p ok"; else echo "KEEL-INIT net ping $p fail $r"; fi
        done
        for p in $unreach; do
            p=$(lower "$p")
            if [ -n "$why_up" ]; then r=$why_up
            elif a=$(ll_of "$p"); then r=$(check_isolated "$a")
            else r="bad-mac"
            fi
            if [ "$r" = ok ]; then echo "KEEL-INIT net isolated $p ok"; else echo "KEEL-INIT net isolated $p fail $r"; fi
        done
        case $tcp in
            '') ;;
            server)
                r=
                if [ -n "$why_up" ]; then r=$why_up
                elif [ ! -p /tmp/nc.in ]; then r="mkfifo"
                else
                    end=$(( $(now) + net_wait ))
                    while [ ! -s /tmp/nc.rc ]; do
                        [ "$(now)" -lt "$end" ] || break
                        sleep 1
                    done
                    if [ ! -s /tmp/nc.rc ]; then
                        [ -s /tmp/nc.pid ] && kill "$(cat /tmp/nc.pid)" 2>/dev/null
                        r="no-end-of-transfer-within-${net_wait}s-got-$(wc -c </tmp/netgot)-bytes"
                    fi
                fi
                if [ -n "$r" ]; then echo "KEEL-INIT net tcp fail $r"
                else
                    read -r rc </tmp/nc.rc
                    bytes=$(wc -c </tmp/netgot)
                    md5=$(md5sum </tmp/netgot | cut -d' ' -f1)
                    if [ "$rc" != 0 ]; then echo "KEEL-INIT net tcp fail nc-exit-$rc bytes=$bytes $(head -c 200 /tmp/nc.err | tr '\n' ' ')"
                    elif [ "$md5" != "$want_md5" ]; then echo "KEEL-INIT net tcp fail bytes=$bytes md5=$md5 expected-bytes=4194304 expected-md5=$want_md5"
                    else echo "KEEL-INIT net tcp ok bytes=$bytes md5=$md5"
                    fi
                fi
                ;;
            client:*)
                p=$(lower "${tcp#client:}")
                read -r md5 </tmp/netpattern.md5
                r=
                if [ -n "$why_up" ]; then r=$why_up
                elif ! a=$(ll_of "$p"); then r="bad-mac-$p"
                else
                    end=$(( $(now) + net_wait ))
                    while :; do
                        # Sends the file, then half-closes; ends when the server closes.
                        timeout $((net_wait + 30)) nc -w 5 "$a%eth0" 5001 </tmp/netpattern >/dev/null 2>/tmp/nc.err
                        rc=$?
                        [ $rc = 0 ] && break
                        # Retry only while the server is not listening yet (the connect failed).
                        grep -q -e "can't connect" -e "timed out" /tmp/nc.err || { r="nc-exit-$rc $(head -c 200 /tmp/nc.err | tr '\n' ' ')"; break; }
                        [ "$(now)" -lt "$end" ] || { r="no-connect-within-${net_wait}s $(head -c 200 /tmp/nc.err | tr '\n' ' ')"; break; }
                        sleep 1
                    done
                fi
                if [ -z "$r" ]; then echo "KEEL-INIT net tcp sent ok md5=$md5"; else echo "KEEL-INIT net tcp sent fail $r"; fi
                ;;
            *) echo "KEEL-INIT net tcp fail bad-keel.tcp=$tcp" ;;
        esac
    fi
    echo "KEEL-INIT net done"
    # A neighbour may still be pinging us: stay reachable a while (keel.linger=S).
    case $linger in '' | *[!0-9]*) ;; *) sleep "$linger" ;; esac
fi

if [ -n "$reboot_once" ] && [ "$boot" = 1 ]; then
    echo "KEEL-INIT rebooting (boot $boot)"
    reboot -f
fi
if [ -n "$stay" ]; then
    echo "KEEL-INIT staying up"
    while :; do sleep 3600; done
fi
echo "KEEL-INIT boot=$boot powering off"
poweroff -f
# Not reached; never let init exit (the kernel would panic).
echo "KEEL-INIT poweroff failed"
while :; do sleep 3600; done
