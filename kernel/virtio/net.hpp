// virtio-net (virtio 1.2 section 5.1): a NIC on a port of Keel's virtual switch
// (net/switch), independent of the transport.
//
// Queue 0 receives, queue 1 transmits; no control queue, one queue pair. Offered:
// MAC (the port's, which the switch enforces as the source of every frame), STATUS
// (link always up), MTU (the network's), MRG_RXBUF, CSUM and GUEST_CSUM; no GSO.
//
// A frame moves once: on the sender's vCPU, its transmit chain is handed to the
// switch, and each receiver copies the bytes from the sender's buffers straight
// into its own receive buffers (deliver()), each side through its own guest's
// bounds-checked memory view. A receiver with no room (no buffers, or too few
// for the frame) loses the frame, counted by the switch as its drop; the sender
// never waits. When the sender asked for a partial checksum (NEEDS_CSUM) and the
// receiver did not negotiate GUEST_CSUM, Keel completes the checksum on the way.
//
// Malformed transmit chains (no room for the header and an Ethernet header, GSO,
// NEEDS_CSUM without CSUM or pointing outside the frame) are dropped and counted,
// not fatal: the ring itself is fine. A malformed ring stops the queue as for
// every virtio device (DEVICE_NEEDS_RESET).
//
// Locking: the transmit queue's lock is held while the switch forwards (the
// switch takes its own lock, then each receiver's receive queue lock in
// deliver()), so the order is sender TX queue -> switch -> receiver RX queue, and
// nothing takes them the other way round.
#pragma once

#include "kernel/net/switch.hpp"
#include "kernel/virtio/device.hpp"
#include "kernel/virtio/pci_transport.hpp"
#include "kernel/virtio/virtqueue.hpp"

namespace virtio {

inline constexpr u16 DEVICE_ID_NET = 1;

// Device-specific feature bits (5.1.3).
inline constexpr u64 NET_F_CSUM = 1ull << 0;
inline constexpr u64 NET_F_GUEST_CSUM = 1ull << 1;
inline constexpr u64 NET_F_MTU = 1ull << 3;
inline constexpr u64 NET_F_MAC = 1ull << 5;
inline constexpr u64 NET_F_MRG_RXBUF = 1ull << 15;
inline constexpr u64 NET_F_STATUS = 1ull << 16;

inline constexpr u16 NET_S_LINK_UP = 1;
inline constexpr u8 NET_HDR_F_NEEDS_CSUM = 1;
inline constexpr u8 NET_HDR_GSO_NONE = 0;
// struct virtio_net_hdr with num_buffers (always present with VIRTIO_F_VERSION_1).
inline constexpr u32 NET_HDR_BYTES = 12;
// mac[6], status, max_virtqueue_pairs, mtu (5.1.4).
inline constexpr u32 NET_CONFIG_SIZE = 12;

struct NetHdr {
    u8 flags = 0;
    u8 gso_type = 0;
    u16 hdr_len = 0, gso_size = 0, csum_start = 0, csum_offset = 0, num_buffers = 0;
};

// What the device itself saw go wrong (the switch keeps the port's traffic counters).
struct NetStats {
    u64 tx_malformed = 0;   // transmit chains dropped: too short, GSO, bad NEEDS_CSUM
    u64 rx_too_big = 0;     // frames that did not fit the receive buffers (no MRG_RXBUF, or too many)
    u64 csum_completed = 0; // partial checksums Keel completed for a receiver without GUEST_CSUM
    u64 service_ticks = 0;  // time in transmit notifies (switching and every receiver's copy), clock ticks
};

class NetDevice final : public VirtioDevice, public net::PortSink {
public:
    static constexpr u16 QUEUE_SIZE = 256;
    static constexpr u16 RX = 0, TX = 1;
    // Most receive buffers one frame may take with MRG_RXBUF: enough for a 9000-byte
    // MTU in 1 KiB buffers. It bounds what a receiver's ring can cost the sender's CPU
    // (each buffer is popped twice, each pop at most Chain::MAX descriptors).
    static constexpr u16 MAX_MERGE = 16;

    using Clock = u64 (*)();   // the switch's time (for its address aging)

    NetDevice(const net::Mac &mac, u16 mtu, Clock clock);

    // Wiring, before the guest runs: where deliver() sends its receive
    // interrupts (the transport this device sits on), then the switch port.
    void set_transport(PciTransport &t) { transport_ = &t; }
    void connect(net::Switch *sw, int port)
    {
        sw_ = sw;
        port_ = port;
    }
    int port() const { return port_; }
    const net::Mac &mac() const { return mac_; }
    NetStats stats() const;

    // VirtioDevice.
    u16 device_id() const override { return DEVICE_ID_NET; }
    u64 features() const override;
    u16 num_queues() const override { return 2; }
    u16 queue_max_size() const override { return QUEUE_SIZE; }
    u32 config_size() const override { return NET_CONFIG_SIZE; }
    u64 config_read(u32 off, u8 size) const override;
    // The MAC is read-only once VIRTIO_F_VERSION_1 is negotiated (5.1.4.2): writes ignored.
    void config_write(u32, u8, u64) override {}
    Serviced service(u16 queue, Virtqueue &vq) override;
    void reset() override {}

    // net::PortSink: a frame for this guest (under the switch's lock, on the sender's CPU).
    net::Delivery deliver(const net::Frame &f) override;

private:
    struct Rx;
    static Serviced receive(void *ctx, Virtqueue &vq);
    void transmit(GuestMemory &mem, const Chain &c, u64 features);

    const net::Mac mac_;
    const u16 mtu_;
    const Clock clock_;
    PciTransport *transport_ = nullptr;
    net::Switch *sw_ = nullptr;
    int port_ = -1;
    NetStats stats_;
};

// The Internet checksum (RFC 1071) of what `src` holds at [from, from + n),
// added to `sum` (not folded, not inverted): for completing partial checksums.
u32 csum_add(const net::FrameSource &src, u32 from, u32 n, u32 sum, bool *ok);

} // namespace virtio
