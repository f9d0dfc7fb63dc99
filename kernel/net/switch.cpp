// One virtual L2 switch (see switch.hpp).
#include "kernel/net/switch.hpp"

namespace net {
namespace {

Mac mac_at(const u8 *p)
{
    Mac m;
    for (unsigned i = 0; i < 6; i++) m.b[i] = p[i];
    return m;
}

} // namespace

Switch::Switch(u32 max_frame, u64 aging) : max_frame_(max_frame), aging_(aging) {}

int Switch::attach(const Mac &mac, PortSink &sink)
{
    Guard<Spinlock> g(lock_);
    if (mac.multicast() || mac.zero()) return -1;
    for (const Port &p : ports_)
        if (p.used && p.mac == mac) return -1;
    for (u32 i = 0; i < MAX_PORTS; i++) {
        Port &p = ports_[i];
        if (p.used) continue;
        p = Port{};
        p.used = true;
        p.mac = mac;
        p.sink = &sink;
        return int(i);
    }
    return -1;
}

void Switch::detach(int port)
{
    Guard<Spinlock> g(lock_);
    if (port < 0 || u32(port) >= MAX_PORTS) return;
    ports_[port].used = false;
    ports_[port].sink = nullptr;
    for (Entry &e : table_)
        if (e.used && e.port == u32(port)) e.used = false;
}

// The entry for mac, else a free one, else the oldest: the table never grows.
void Switch::learn(const Mac &mac, u32 port, u64 now)
{
    Entry *slot = nullptr;
    for (Entry &e : table_) {
        if (e.used && e.mac == mac) {
            slot = &e;
            break;
        }
        if (!slot || (slot->used && (!e.used || e.seen < slot->seen))) slot = &e;
    }
    slot->used = true;
    slot->mac = mac;
    slot->port = port;
    slot->seen = now;
}

int Switch::lookup(const Mac &mac, u64 now) const
{
    for (const Entry &e : table_)
        if (e.used && e.mac == mac) return now - e.seen <= aging_ ? int(e.port) : -1;
    return -1;
}

bool Switch::deliver(u32 to, const Frame &f)
{
    Port &p = ports_[to];
    switch (p.sink->deliver(f)) {
    case Delivery::ok:
        p.st.rx_packets++;
        p.st.rx_bytes += f.len;
        return true;
    case Delivery::no_room: p.st.drop_rx_full++; return false;
    case Delivery::error: p.st.drop_rx_error++; return false;
    }
    return false;
}

u32 Switch::send(int port, const Frame &f, u64 now)
{
    Guard<Spinlock> g(lock_);
    if (port < 0 || u32(port) >= MAX_PORTS || !ports_[port].used) return 0;
    Port &from = ports_[port];
    if (f.len < ETH_HEADER || f.len > max_frame_) {
        from.st.drop_malformed++;
        return 0;
    }
    const Mac dst = mac_at(f.header), src = mac_at(f.header + 6);
    if (!(src == from.mac)) {   // a multicast source is never a port's (its MAC is unicast)
        from.st.drop_spoofed++;
        return 0;
    }
    from.st.tx_packets++;
    from.st.tx_bytes += f.len;
    learn(src, u32(port), now);
    if (!dst.multicast()) {
        const int to = lookup(dst, now);
        if (to == port) return 0;   // for the sender's own side of the switch: filtered
        if (to >= 0) return deliver(u32(to), f) ? 1 : 0;
    }
    u32 n = 0;
    for (u32 i = 0; i < MAX_PORTS; i++)
        if (ports_[i].used && i != u32(port) && deliver(i, f)) n++;
    return n;
}

PortStats Switch::stats(int port)
{
    Guard<Spinlock> g(lock_);
    if (port < 0 || u32(port) >= MAX_PORTS) return {};
    return ports_[port].st;
}

u32 Switch::learned(u64 now)
{
    Guard<Spinlock> g(lock_);
    u32 n = 0;
    for (const Entry &e : table_)
        if (e.used && now - e.seen <= aging_) n++;
    return n;
}

} // namespace net
