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
# With keel.disk=vda (Keel's first [[guest.disk]]) it first loads the virtio modules of
# /lib/modules, waits for /sys/block/vda, checks "KEEL-DISK-SIGNATURE" at the start of
# sector 0 (after the first boot: the pattern already in sectors 8-11), writes a pattern
# to sectors 8-11, syncs and flushes, reads it back and prints
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
disk=
read -r cmdline </proc/cmdline
set -f
for word in $cmdline; do
    case $word in
        keel.cpus=*) want_cpus=${word#*=} ;;
        keel.mem_mb=*) want_mem=${word#*=} ;;
        keel.boot=*) boot=${word#*=} ;;
        keel.reboot_once) reboot_once=1 ;;
        keel.disk=*) disk=${word#*=} ;;
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

# The disk check: one line, ok or the first thing that went wrong.
check_disk() {
    d=$1
    for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do   # dependency order
        [ -d /sys/module/$m ] || insmod /lib/modules/$m.ko || { echo "insmod-$m"; return; }
    done
    n=0
    while [ ! -e /sys/block/$d/dev ]; do
        n=$((n + 1))
        [ $n -le 100 ] || { echo "no-/sys/block/$d"; return; }
        sleep 0.1
    done
    IFS=: read -r major minor </sys/block/$d/dev
    [ -b /dev/$d ] || mknod /dev/$d b "$major" "$minor" || { echo "mknod"; return; }
    sig=$(dd if=/dev/$d bs=512 count=1 2>/dev/null | head -c 19)
    [ "$sig" = KEEL-DISK-SIGNATURE ] || { echo "signature-'$sig'"; return; }
    i=0
    while [ $i -lt 128 ]; do printf 'keel-pattern-%03d' $i; i=$((i + 1)); done >/tmp/pattern   # 2 KiB
    # A later start of the guest (a reboot) finds what the first one wrote: the disk outlives it.
    if [ -n "$boot" ] && [ "$boot" -gt 1 ]; then
        dd if=/dev/$d of=/tmp/kept bs=512 skip=8 count=4 2>/dev/null || { echo "read-kept"; return; }
        cmp -s /tmp/pattern /tmp/kept || { echo "boot-$boot-lost-boot-1-pattern"; return; }
    fi
    dd if=/tmp/pattern of=/dev/$d bs=512 seek=8 count=4 conv=fsync 2>/dev/null || { echo "write"; return; }
    sync
    blockdev --flushbufs /dev/$d || { echo "flushbufs"; return; }
    dd if=/dev/$d of=/tmp/back bs=512 skip=8 count=4 2>/dev/null || { echo "read-back"; return; }
    cmp -s /tmp/pattern /tmp/back || { echo "pattern-mismatch"; return; }
    echo ok
}
if [ -n "$disk" ]; then
    r=$(check_disk "$disk")
    if [ "$r" = ok ]; then echo "KEEL-INIT disk $disk ok"; else echo "KEEL-INIT disk $disk fail $r"; fi
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
