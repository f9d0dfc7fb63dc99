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
load_virtio() {
    for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do   # dependency order
        [ -d /sys/module/$m ] || insmod /lib/modules/$m.ko || { echo "insmod-$m"; return; }
    done
    echo ok
}
pattern() { [ -f /tmp/pattern ] || seq -w 0 1048575 >/tmp/pattern; }   # 8 MiB
check_disk() {
    mode=$1 d=$2 sectors=$3 want=$4
    n=0
    while [ ! -e /sys/block/$d/dev ]; do
        n=$((n + 1))
        [ $n -le 100 ] || { echo "no-/sys/block/$d"; return; }
        sleep 0.1
    done
    IFS=: read -r major minor </sys/block/$d/dev
    [ -b /dev/$d ] || mknod /dev/$d b "$major" "$minor" || { echo "mknod"; return; }
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
    r=$(load_virtio)
    for spec in $disks; do
        mode=${spec%%:*} rest=${spec#*:}
        d=${rest%%:*} rest=${rest#*:}
        sectors=${rest%%:*} want=${rest#*:}
        [ "$r" = ok ] && r2=$(check_disk "$mode" "$d" "$sectors" "$want") || r2=$r
        if [ "$r2" = ok ]; then echo "KEEL-INIT disk $d ok"; else echo "KEEL-INIT disk $d fail $r2"; fi
    done
fi

if [ -n "$reboot_once" ] && [ "$boot" = 1 ]; then
    echo "KEEL-INIT rebooting (boot $boot)"
    reboot -f
fi
echo "KEEL-INIT boot=$boot powering off"
poweroff -f
# Not reached; never let init exit (the kernel would panic).
echo "KEEL-INIT poweroff failed"
while :; do sleep 3600; done
