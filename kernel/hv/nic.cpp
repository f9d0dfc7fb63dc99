// Keel's networks and the guests' NICs ([[network]], [[guest.nic]]): one virtual
// switch (net/switch) per network, made once at start; each NIC a virtio-net
// device (virtio/net) on a modern virtio-pci function (virtio/virtio_pci) at
// the PCI device after the guest's disks, so the first NIC is Linux's eth0, and
// on a port of its network's switch with its configured or assigned MAC.
//
// NICs are plugged at every start of the guest and unplugged (their ports leave
// the switch) before its memory is released or rebuilt: once detach() returns, no
// other guest's frame is being copied into this guest's RAM, and none will be.
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/new.hpp"

namespace hv {
namespace {

alignas(net::Switch) u8 switch_storage_[KeelConfig::MAX_NETWORKS][sizeof(net::Switch)];
net::Switch *switches_[KeelConfig::MAX_NETWORKS];

// The switch's clock: the TSC (its address aging is set in TSC ticks).
u64 tsc_now() { return x86::rdtsc(); }

// An address a switch forgets when its owner has been silent this long.
constexpr u64 AGING_S = 300;

// DEVICE_NEEDS_RESET: the transport's reason with the guest's name and the NIC, once per start.
void nic_report(void *ctx, const char *reason)
{
    GuestNic &n = *static_cast<GuestNic *>(ctx);
    if (__atomic_exchange_n(&n.reported, true, __ATOMIC_ACQ_REL)) return;
    log_error("guest %s: nic %u: %s", n.guest->name, n.index, reason);
}

} // namespace

void create_networks()
{
    for (u32 i = 0; i < config_.network_count; i++) {
        const NetworkConfig &nc = config_.networks[i];
        // A frame: the MTU, the Ethernet header and one VLAN tag.
        switches_[i] = new (switch_storage_[i]) net::Switch(nc.mtu + net::ETH_HEADER + 4, AGING_S * time::tsc_hz());
        log_info("network %.*s: isolated, mtu %u", int(nc.name.n), nc.name.p, nc.mtu);
    }
}

bool plug_nics(Guest &g)
{
    const GuestConfig &c = *g.cfg;
    static_assert(GuestConfig::MAX_PCI < PciBus::MAX_DEVICES, "disks and NICs are PCI devices 1..MAX_PCI");
    g.nnics = 0;
    for (u32 i = 0; i < c.nic_count; i++) {
        const NicConfig &nc = c.nics[i];
        GuestNic &n = g.nics[i];
        n.guest = &g;
        n.index = i;
        n.reported = false;
        n.sw = switches_[nc.network_index];
        n.dev = new (n.dev_storage) virtio::NetDevice(nc.mac, u16(config_.networks[nc.network_index].mtu), tsc_now);
        n.fn = new (n.fn_storage) virtio::VirtioPciFunction(*n.dev, g.mem, nic_report, &n);
        n.fn->transport().signal_pending(&g.platform.attention, GuestPlatform::ATTN_DEVICES);
        const u32 slot = c.disk_count + 1 + i;
        if (!n.fn->ok() || !g.pci->plug(slot, *n.fn)) {
            log_error("guest %s: keel.toml line %u: nic %u cannot be plugged at PCI device %u; not started", g.name,
                      nc.line, i, slot);
            return false;
        }
        n.dev->set_transport(n.fn->transport());
        const int port = n.sw->attach(nc.mac, *n.dev);
        if (port < 0) {
            log_error("guest %s: keel.toml line %u: network '%.*s' has no free port (at most %u); not started",
                      g.name, nc.line, int(config_.networks[nc.network_index].name.n),
                      config_.networks[nc.network_index].name.p, net::Switch::MAX_PORTS);
            return false;
        }
        n.dev->connect(n.sw, port);
        g.nnics = i + 1;
        char mac[18];
        net::format_mac(mac, nc.mac);
        log_info("guest %s: nic %u: %s on network %.*s%s", g.name, i, mac,
                 int(config_.networks[nc.network_index].name.n), config_.networks[nc.network_index].name.p,
                 nc.mac_set ? "" : " (assigned)");
    }
    return true;
}

void unplug_nics(Guest &g)
{
    for (u32 i = 0; i < g.nnics; i++) {
        GuestNic &n = g.nics[i];
        if (n.dev->port() >= 0) n.sw->detach(n.dev->port());
        n.dev->connect(nullptr, -1);
    }
    g.nnics = 0;
}

void service_nics(Guest &g)
{
    for (u32 i = 0; i < g.nnics; i++) {
        virtio::PciTransport &t = g.nics[i].fn->transport();
        if (t.pending()) (void)t.run_pending();
    }
}

void print_nic_stats(Guest &g, bool asked)
{
    for (u32 i = 0; i < g.nnics; i++) {
        GuestNic &n = g.nics[i];
        const net::PortStats p = n.sw->stats(n.dev->port());
        const virtio::NetStats d = n.dev->stats();
        console::report(asked, Level::info, "stats %s nic=%u tx_packets=%lu tx_bytes=%lu rx_packets=%lu rx_bytes=%lu drop_spoofed=%lu "
                 "drop_malformed=%lu drop_rx_full=%lu drop_rx_error=%lu tx_bad=%lu csum_completed=%lu service_us=%lu",
                 g.name, i, p.tx_packets, p.tx_bytes, p.rx_packets, p.rx_bytes, p.drop_spoofed, p.drop_malformed,
                 p.drop_rx_full, p.drop_rx_error, d.tx_malformed, d.csum_completed,
                 d.service_ticks / max<u64>(time::tsc_hz() / 1000000, 1));
    }
}

} // namespace hv
