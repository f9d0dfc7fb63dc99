// The device side of a split virtqueue (virtio 1.2 section 2.7): the one ring
// engine every virtio device model uses.
//
// Everything in the rings is guest input that can change under our feet (another
// vCPU of the guest writes it while we read it). So every field is copied out
// through GuestMemory::read once and checked on the copy; nothing keeps a pointer
// into guest RAM. A malformed ring or chain is never "fixed up": the queue stops
// (error() says why, error_info() says where) and the transport sets
// DEVICE_NEEDS_RESET and writes a one-line report.
//
// Limits (why these numbers):
//  - size: a power of two in 1..32768 (the split ring's rule, 2.7).
//  - a chain: at most `size` descriptors in the descriptor table (more can only
//    be a loop), and at most Chain::MAX = 256 descriptors in all, an indirect
//    table's included. An indirect table may hold more than `size` (2.7.5.3.1
//    forbids it, but Linux builds them so and QEMU accepts them). Linux's
//    virtio-blk builds at most seg_max + 2 (header and status), and virtio-blk
//    offers seg_max = 254; 256 segments keep a Chain at 4 KiB, so it can live
//    in the queue rather than on a 16 KiB kernel stack.
//  - a chain's bytes: at most MAX_CHAIN_BYTES = 64 MiB, which bounds the time a
//    single request can keep a vCPU in Keel.
//
// Locking: the queue does not lock itself. Everything that reads or changes it
// (the transport's register writes, a device's service() on a notify) holds
// lock(); so two vCPUs kicking the same queue take turns, and two queues of one
// device run in parallel.
#pragma once

#include "kernel/guest/guest_memory.hpp"
#include "kernel/lib/spinlock.hpp"
#include "kernel/lib/types.hpp"

namespace virtio {

// Device-independent feature bits (6).
inline constexpr u64 F_INDIRECT_DESC = 1ull << 28;
inline constexpr u64 F_EVENT_IDX = 1ull << 29;
inline constexpr u64 F_VERSION_1 = 1ull << 32;

// Why a queue stopped. Each malformed input has its own reason.
enum class VqError : u8 {
    none = 0,
    bad_size,                 // queue size not a power of two in 1..32768
    ring_unaligned,           // descriptor table not 16-, avail 2-, used ring not 4-byte aligned
    ring_outside_ram,         // a ring not wholly inside the guest's RAM
    avail_idx_jump,           // avail idx more than `size` ahead of what the device consumed
    head_index,               // an avail ring entry >= size
    desc_index,               // a next index >= size (or past its indirect table)
    chain_loop,               // more descriptors than the table holds: a loop
    chain_too_long,           // more than Chain::MAX descriptors, indirect ones included
    chain_too_big,            // more than MAX_CHAIN_BYTES in one chain
    addr_wrap,                // addr + len wraps past 2^64
    buffer_outside_ram,       // a buffer not wholly inside the guest's RAM
    read_after_write,         // a device-readable descriptor after a device-writable one
    indirect_not_negotiated,  // VIRTQ_DESC_F_INDIRECT without VIRTIO_F_INDIRECT_DESC
    indirect_nested,          // an indirect descriptor inside an indirect table
    indirect_len,             // indirect table length zero or not a multiple of 16
    indirect_with_next,       // VIRTQ_DESC_F_INDIRECT together with VIRTQ_DESC_F_NEXT
    indirect_outside_ram,     // an indirect table not wholly inside the guest's RAM
    bad_push,                 // the device returned a head >= size (a device bug)
};

// A short lower-case phrase for the report ("descriptor index beyond the queue").
const char *vq_error_text(VqError e);

// One buffer of a chain, as the device may use it.
struct Segment {
    u64  gpa;
    u32  len;
    bool writable;   // device-writable (VIRTQ_DESC_F_WRITE)
};

// A descriptor chain, flattened: the device-readable segments, then the
// device-writable ones (pop() enforces that order).
struct Chain {
    static constexpr usize MAX = 256;

    u16     head = 0;        // what push() gives back
    u16     n = 0;           // segments in seg[]
    u16     n_readable = 0;  // seg[0, n_readable) are device-readable
    u64     readable = 0;    // bytes in the readable segments
    u64     writable = 0;    // bytes in the writable segments
    Segment seg[MAX];
};

class Virtqueue {
public:
    static constexpr u32 MAX_SIZE = 32768;
    static constexpr u64 MAX_CHAIN_BYTES = 64 * MiB;

    explicit Virtqueue(GuestMemory *mem = nullptr) : mem_(mem) {}
    Virtqueue(const Virtqueue &) = delete;
    Virtqueue &operator=(const Virtqueue &) = delete;

    // ---- the transport (virtio-pci common configuration), under lock() ----

    void attach(GuestMemory &mem) { mem_ = &mem; }
    // Back to the state after a device reset: disabled, no error, indices 0.
    // Size and ring addresses are cleared too (the transport writes its maximum).
    void reset();
    // Written while the queue is disabled (a driver may not change a live queue;
    // ignored when enabled).
    void set_size(u32 size);
    void set_rings(u64 desc, u64 driver, u64 device);
    void set_features(u64 negotiated);
    // queue_enable = 1: check size, alignment and that all three rings are in
    // RAM. False (and error() set, the queue stays disabled) if not.
    bool enable();

    bool enabled() const { return enabled_; }
    u32 size() const { return size_; }
    u64 desc_addr() const { return desc_; }
    u64 driver_addr() const { return avail_; }
    u64 device_addr() const { return used_; }
    VqError error() const { return err_; }
    // The index or address that broke the queue (what the report prints).
    u64 error_info() const { return err_info_; }
    Spinlock &lock() { return lock_; }
    GuestMemory *memory() const { return mem_; }
    // The features negotiated when the queue was set up (what the device may use).
    u64 features() const { return features_; }

    // ---- the device, under lock() ----

    // Takes the next available chain into c. False when there is none, or the
    // queue is disabled or broken (then error() != none). c's content is
    // meaningful only after true.
    bool pop(Chain &c);
    // Gives back the last n chains popped and not pushed: the next pop() reads
    // their avail ring entries again (a device that found it cannot use them yet,
    // e.g. a frame that needs more receive buffers than are available).
    void unpop(u16 n) { last_avail_ = u16(last_avail_ - n); }
    // Returns a chain popped earlier to the driver with the bytes the device
    // wrote into it. False (and the queue broken, bad_push) for a head >= size.
    bool push(u16 head, u32 written);
    // Device -> driver: should the driver be interrupted for what was pushed
    // since the last call? Honours VRING_AVAIL_F_NO_INTERRUPT, or used_event
    // when VIRTIO_F_EVENT_IDX was negotiated. False when nothing was pushed.
    bool needs_notify();
    // Driver -> device suppression: with EVENT_IDX, ask to be notified when the
    // driver makes avail idx pass `idx` (written to the used ring's
    // avail_event); without, VRING_USED_F_NO_NOTIFY.
    void set_avail_event(u16 idx);
    void set_no_notify(bool on);
    // Anything available (re-reads the driver's idx after a full fence, so a
    // buffer added while notifications were off is not missed).
    bool has_avail();
    // The next avail ring slot the device will consume.
    u16 last_avail() const { return last_avail_; }

    // A chain buffer for the device servicing this queue (under lock()), so a
    // 4 KiB Chain never sits on a kernel stack.
    Chain &scratch() { return scratch_; }

private:
    bool fail(VqError e, u64 info);
    bool read16(u64 gpa, u16 &v);
    bool write16(u64 gpa, u16 v);
    bool add_segment(Chain &c, u64 addr, u32 len, u16 flags);
    bool walk_indirect(Chain &c, u64 addr, u32 len);

    GuestMemory *mem_;
    Spinlock lock_;
    u32  size_ = 0;
    u64  desc_ = 0, avail_ = 0, used_ = 0;
    u64  features_ = 0;
    bool enabled_ = false;
    VqError err_ = VqError::none;
    u64  err_info_ = 0;

    u16  last_avail_ = 0;      // next avail ring slot the device consumes
    u16  shadow_avail_ = 0;    // the driver's idx when last read
    u16  used_idx_ = 0;        // the device's used idx
    u16  notified_used_ = 0;   // used idx at the last needs_notify()
    Chain scratch_;
};

} // namespace virtio
