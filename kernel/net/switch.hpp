// One virtual L2 switch: Keel makes one per [[network]], so a frame can never
// cross from one network to another (there is no path between two instances).
//
// What it does with a frame a port sends:
//  - anti-spoofing: the source MAC must be the port's own (a multicast source is
//    never one); otherwise the frame is dropped and counted on that port;
//  - length: 14 bytes (an Ethernet header) up to max_frame; otherwise dropped;
//  - learning: the source MAC is (re)learned on the port, with its time;
//  - forwarding: a unicast destination learned on another port, younger than
//    `aging`, goes to that port only (on the sender's own port: filtered);
//    broadcast, multicast and unknown unicast go to every other attached port.
// Each receiver copies the frame itself (PortSink::deliver), its first 14 bytes from
// Frame::header (the copy the switch checked: the sender's other vCPUs may rewrite
// their buffer while it is forwarded) and the rest from Frame::src, or refuses: a port
// with no room loses its own frame, counted there, and nobody waits for it. The
// switch never copies a payload and never allocates.
//
// Locking: one lock per switch, held across send() including the receivers'
// deliver() calls, and by attach/detach/stats; after detach() returns, no
// deliver() to that port is running or will run. Callers take, in this order:
// the sender's transmit queue lock, the switch lock, a receiver's receive queue
// lock. deliver() must never call back into the switch.
#pragma once

#include "kernel/lib/spinlock.hpp"
#include "kernel/lib/types.hpp"
#include "kernel/net/mac.hpp"

namespace net {

inline constexpr u32 ETH_HEADER = 14;

// A frame's bytes, read from wherever the sender keeps them (its guest's memory).
class FrameSource {
public:
    virtual bool read(u32 off, void *dst, u32 n) const = 0;

protected:
    ~FrameSource() = default;
};

struct Frame {
    u8 header[ETH_HEADER];     // destination MAC, source MAC, ethertype (a copy)
    u32 len = 0;               // the whole frame, header included
    const FrameSource *src = nullptr;   // its bytes, header included
    const void *meta = nullptr;         // the sender's (virtio-net header), for the receiver; opaque here
};

enum class Delivery : u8 { ok, no_room, error };

// A port's receive side.
class PortSink {
public:
    virtual Delivery deliver(const Frame &f) = 0;

protected:
    ~PortSink() = default;
};

// A port's counters, from its guest's point of view (like a NIC's).
struct PortStats {
    u64 tx_packets = 0, tx_bytes = 0;   // sent by the guest, accepted by the switch
    u64 rx_packets = 0, rx_bytes = 0;   // delivered to the guest
    u64 drop_spoofed = 0;               // sent with a source MAC not the port's
    u64 drop_malformed = 0;             // sent shorter than a header or longer than max_frame
    u64 drop_rx_full = 0;               // for this port, but it had no room
    u64 drop_rx_error = 0;              // for this port, but its receive side failed
};

class Switch {
public:
    static constexpr u32 MAX_PORTS = 16;
    static constexpr u32 TABLE = 64;    // learned addresses

    // max_frame: the longest frame in bytes (MTU + header + a VLAN tag); aging: how
    // long a learned address stays valid, in the unit of send()'s `now`.
    explicit Switch(u32 max_frame = 1518, u64 aging = 300);
    Switch(const Switch &) = delete;
    Switch &operator=(const Switch &) = delete;

    // A new port whose guest owns `mac`: its index, or -1 when all are taken, or when
    // mac is multicast, zero or already a port's (it could never send, or two ports
    // would take each other's frames).
    int attach(const Mac &mac, PortSink &sink);
    // The port leaves; the addresses learned on it are forgotten.
    void detach(int port);
    // A frame from `port` at time `now`; the number of ports it was delivered to.
    // A port index that is not attached sends nothing.
    u32 send(int port, const Frame &f, u64 now);
    PortStats stats(int port);
    // Learned addresses still valid at `now`.
    u32 learned(u64 now);

private:
    struct Port {
        bool used = false;
        Mac mac{};
        PortSink *sink = nullptr;
        PortStats st;
    };
    struct Entry {
        bool used = false;
        Mac mac{};
        u32 port = 0;
        u64 seen = 0;
    };

    void learn(const Mac &mac, u32 port, u64 now);
    int lookup(const Mac &mac, u64 now) const;
    bool deliver(u32 to, const Frame &f);

    const u32 max_frame_;
    const u64 aging_;
    Spinlock lock_;
    Port ports_[MAX_PORTS];
    Entry table_[TABLE];
};

} // namespace net
