// The virtio-pci modern transport's registers (virtio 1.2 section 4.1),
// independent of the PCI bus: the PCI function (its BAR, capabilities and
// MSI-X table) maps four regions onto a BAR and forwards each access here.
//
// Modern only: VIRTIO_F_VERSION_1 must be negotiated, or FEATURES_OK is
// refused. The regions:
//  - common: the common configuration structure of 4.1.4.3, byte for byte
//    (COMMON_BYTES). Any naturally aligned access of 1, 2, 4 or 8 bytes works,
//    also one that covers parts of several fields (a narrow write merges into
//    the field; the 64-bit ring addresses as two 32-bit halves, as Linux
//    writes them). Unimplemented offsets read 0, writes to them are dropped.
//  - notify: queue i's notify address is queue_notify_off(i) *
//    NOTIFY_MULTIPLIER with queue_notify_off(i) = i and a multiplier of 4: each
//    queue its own 4-byte slot, so the queue is known from the address alone
//    (a later fast path can route a queue's page or slot without decoding the
//    value). The value written is not looked at (4.1.4.4 lets the device use
//    either); VIRTIO_F_NOTIFICATION_DATA is not offered.
//  - isr: one byte, bit 0 queue interrupt, bit 1 configuration change; a read
//    returns and clears it (4.1.4.5).
//  - device: the device's configuration space (VirtioDevice::config_read).
//
// Interrupts go to an IrqSink: a vector < msix_vectors is an MSI-X table
// entry; NO_VECTOR (also what a write of a vector beyond the table reads back
// as, 4.1.5.1.2) means INTx: the ISR bit is set and the line raised; so does
// any vector while the sink says MSI-X is off (IrqSink::vectors_enabled).
//
// A driver error is never worked around. DRIVER_OK before FEATURES_OK, a queue
// enabled before FEATURES_OK or with a bad size or rings, a notify before
// DRIVER_OK, or any error of the virtqueue engine sets DEVICE_NEEDS_RESET
// (2.1.2), sends a configuration change interrupt, stops all servicing until
// the driver writes 0 to device_status, and leaves a one-line reason
// (last_error(), and IrqSink::needs_reset) for the hypervisor to print with the
// guest's name. Only the first reason is kept until the reset.
//
// Locking: one transport lock serialises the register state between vCPUs.
// The order is transport lock, then a queue's lock (queue set-up and reset take
// both); a notify holds neither while the device services the queue (the
// device takes the queue's lock itself), so queues run in parallel and a
// register access is never held up by a long request. MSI-X messages are sent
// with no lock held, so the sink may take the PCI function's locks (its MSI-X
// table) and the PCI function may call read/write under its own. INTx level
// changes (and needs_reset) are made under the transport lock so the line
// follows the ISR exactly: the sink must not call back into the transport.
#pragma once

#include "kernel/lib/spinlock.hpp"
#include "kernel/lib/types.hpp"
#include "kernel/virtio/device.hpp"
#include "kernel/virtio/virtqueue.hpp"

namespace virtio {

// device_status bits (2.1).
inline constexpr u8 STATUS_ACKNOWLEDGE = 1;
inline constexpr u8 STATUS_DRIVER = 2;
inline constexpr u8 STATUS_DRIVER_OK = 4;
inline constexpr u8 STATUS_FEATURES_OK = 8;
inline constexpr u8 STATUS_NEEDS_RESET = 0x40;
inline constexpr u8 STATUS_FAILED = 0x80;

inline constexpr u16 NO_VECTOR = 0xffff;   // VIRTIO_MSI_NO_VECTOR
inline constexpr u8 ISR_QUEUE = 1;
inline constexpr u8 ISR_CONFIG = 2;

// Offsets in the common configuration structure (4.1.4.3).
namespace common {
inline constexpr u32 DEVICE_FEATURE_SELECT = 0x00;
inline constexpr u32 DEVICE_FEATURE = 0x04;
inline constexpr u32 DRIVER_FEATURE_SELECT = 0x08;
inline constexpr u32 DRIVER_FEATURE = 0x0c;
inline constexpr u32 CONFIG_MSIX_VECTOR = 0x10;
inline constexpr u32 NUM_QUEUES = 0x12;
inline constexpr u32 DEVICE_STATUS = 0x14;
inline constexpr u32 CONFIG_GENERATION = 0x15;
inline constexpr u32 QUEUE_SELECT = 0x16;
inline constexpr u32 QUEUE_SIZE = 0x18;
inline constexpr u32 QUEUE_MSIX_VECTOR = 0x1a;
inline constexpr u32 QUEUE_ENABLE = 0x1c;
inline constexpr u32 QUEUE_NOTIFY_OFF = 0x1e;
inline constexpr u32 QUEUE_DESC = 0x20;
inline constexpr u32 QUEUE_DRIVER = 0x28;
inline constexpr u32 QUEUE_DEVICE = 0x30;
inline constexpr u32 QUEUE_NOTIFY_DATA = 0x38;   // VIRTIO_F_NOTIF_CONFIG_DATA: not offered, reads 0
inline constexpr u32 QUEUE_RESET = 0x3a;         // VIRTIO_F_RING_RESET: not offered, reads 0
} // namespace common

// Where the transport's interrupts go (the PCI function).
class IrqSink {
public:
    // Send MSI-X table entry `vector` (< the transport's msix_vectors). Called
    // with no transport lock held.
    virtual void raise(u16 vector) = 0;
    // The INTx line follows the ISR: raised when a bit is set, lowered when a
    // read clears it. Called under the transport lock.
    virtual void raise_intx() = 0;
    virtual void lower_intx() = 0;
    // Whether vectors are in use (the PCI function's MSI-X Enable). false:
    // every interrupt sets the ISR and raises INTx, whatever vector the driver
    // programmed (4.1.5.3-4). Called under the transport lock.
    virtual bool vectors_enabled() { return true; }
    // DEVICE_NEEDS_RESET was just set, for `reason` (under the transport lock).
    virtual void needs_reset(const char *reason) { (void)reason; }

protected:
    ~IrqSink() = default;
};

struct TransportStats {
    u64 notifies = 0;     // writes to the notify region
    u64 interrupts = 0;   // MSI-X messages sent and INTx raises
    u64 resets = 0;       // device_status = 0
    u64 errors = 0;       // times DEVICE_NEEDS_RESET was set
};

class PciTransport {
public:
    enum class Region : u8 { common, notify, isr, device };

    static constexpr u16 MAX_QUEUES = 8;
    static constexpr u32 NOTIFY_MULTIPLIER = 4;
    static constexpr u32 COMMON_BYTES = 0x3c;    // through queue_reset
    static constexpr u32 ISR_BYTES = 1;
    static constexpr usize REASON_BYTES = 96;

    // `dev` reports at most MAX_QUEUES queues (more are not exposed);
    // `msix_vectors` is the MSI-X table's size (0: INTx only).
    PciTransport(VirtioDevice &dev, GuestMemory &mem, IrqSink &irq, u16 msix_vectors);
    PciTransport(const PciTransport &) = delete;
    PciTransport &operator=(const PciTransport &) = delete;

    // A guest access of `size` bytes at `off` in a region. A size other than
    // 1, 2, 4, 8, or an access not naturally aligned, reads 0 and writes
    // nothing. A notify services the queue on the calling vCPU.
    u64 read(Region r, u32 off, u8 size);
    void write(Region r, u32 off, u8 size, u64 value);

    // Bytes of each region (for the PCI capabilities and BAR layout).
    u32 region_bytes(Region r) const;

    // Work the device starts itself on queue q, from any CPU (a frame arriving
    // for a NIC): runs fn(ctx, vq) when the device is live (DRIVER_OK, no
    // DEVICE_NEEDS_RESET) and the queue enabled, with no transport lock held
    // (fn takes vq.lock()); then, as after a notify, a queue error sets
    // DEVICE_NEEDS_RESET and the interrupt fn asks for is sent. False if fn did not run.
    using Work = Serviced (*)(void *ctx, Virtqueue &vq);
    bool run_device(u16 q, Work fn, void *ctx);

    // Services once more the queues whose last batch ended at its budget
    // (Serviced::again), e.g. from the vCPU's next exit. True if some are
    // still pending afterwards.
    bool run_pending();
    // Whether run_pending() has work: a lock-free look, cheap enough for every exit.
    bool pending() const { return __atomic_load_n(&pending_, __ATOMIC_RELAXED) != 0; }
    // Also say so in *word (bit `bit`, set atomically) each time work is left pending: the
    // owner's run loops look at the word (GuestPlatform::attention), not at every transport.
    void signal_pending(u32 *word, u32 bit)
    {
        signal_ = word;
        signal_bit_ = bit;
    }

    u8 status();
    u16 num_queues() const { return nq_; }
    // The reason for DEVICE_NEEDS_RESET ("" when it is clear).
    const char *last_error();
    TransportStats stats();

private:
    struct Queue {
        u16 size = 0;
        u16 msix = NO_VECTOR;
        bool enabled = false;
        u64 desc = 0, driver = 0, device = 0;
        Virtqueue vq;
    };
    // Interrupts decided under the lock, sent once it is released. One access
    // produces at most one (a DEVICE_NEEDS_RESET is set once per reset).
    struct Outbox {
        u16 vec[2];
        usize n = 0;
    };

    u64 read_common(u32 off, u8 size);
    void write_common(u32 off, u8 size, u64 value, Outbox &out);
    u64 field(u32 off);
    void set_field(u32 off, u64 v, Outbox &out);
    void set_status(u8 v, Outbox &out);
    void enable_queue(u16 q, Outbox &out);
    void reset();
    void fail(Outbox &out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
    void interrupt(u16 vector, u8 isr_bit, Outbox &out);
    void send(const Outbox &out);
    u16 vector(u64 v) const { return v < msix_vectors_ ? u16(v) : NO_VECTOR; }
    // Services queue q (fn: the device's own work; nullptr: its service()).
    // guest: the driver's notify (checked against DRIVER_OK).
    bool notify(u16 q, bool guest, Work fn = nullptr, void *ctx = nullptr);

    VirtioDevice &dev_;
    IrqSink &irq_;
    const u16 msix_vectors_;
    const u16 nq_;
    const u64 offered_;

    Spinlock lock_;   // everything below
    u8 status_ = 0;
    u8 isr_ = 0;
    u8 generation_ = 0;
    u32 dev_select_ = 0, drv_select_ = 0;
    u64 driver_features_ = 0;   // what the driver wrote; negotiated once FEATURES_OK is set
    u16 msix_config_ = NO_VECTOR;
    u16 queue_select_ = 0;
    u32 pending_ = 0;           // queues to service again (bit i: queue i)
    u32 *signal_ = nullptr;     // signal_pending (set before the guest runs)
    u32 signal_bit_ = 0;
    TransportStats stats_;
    char reason_[REASON_BYTES] = {};
    Queue q_[MAX_QUEUES];
};

} // namespace virtio
