// The split virtqueue, device side (virtio 1.2 section 2.7).
#include "kernel/virtio/virtqueue.hpp"

#include "kernel/lib/bytes.hpp"

namespace virtio {

namespace {

// Descriptor flags (2.7.5).
constexpr u16 DESC_F_NEXT = 1;
constexpr u16 DESC_F_WRITE = 2;
constexpr u16 DESC_F_INDIRECT = 4;
constexpr u16 AVAIL_F_NO_INTERRUPT = 1;
constexpr u16 USED_F_NO_NOTIFY = 1;
constexpr u64 DESC_SIZE = 16;

// Ring layouts: avail = flags, idx, ring[size] (u16), used_event;
// used = flags, idx, ring[size] {u32 id, u32 len}, avail_event.
constexpr u64 avail_bytes(u32 size) { return 6 + 2ull * size; }
constexpr u64 used_bytes(u32 size) { return 6 + 8ull * size; }

struct Desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};

Desc decode(const u8 *b) { return {load_u64(b), load_u32(b + 8), load_u16(b + 12), load_u16(b + 14)}; }

// vring_need_event (2.7.10): has the used idx gone from old past event?
bool need_event(u16 event, u16 now, u16 old) { return u16(now - event - 1) < u16(now - old); }

} // namespace

const char *vq_error_text(VqError e)
{
    switch (e) {
    case VqError::none: return "no error";
    case VqError::bad_size: return "queue size not a power of two in 1..32768";
    case VqError::ring_unaligned: return "ring address misaligned";
    case VqError::ring_outside_ram: return "ring outside guest RAM";
    case VqError::avail_idx_jump: return "avail idx more than the queue size ahead";
    case VqError::head_index: return "avail ring head beyond the queue";
    case VqError::desc_index: return "descriptor next index beyond its table";
    case VqError::chain_loop: return "descriptor chain loops";
    case VqError::chain_too_long: return "descriptor chain too long";
    case VqError::chain_too_big: return "descriptor chain too many bytes";
    case VqError::addr_wrap: return "buffer address + length wraps";
    case VqError::buffer_outside_ram: return "buffer outside guest RAM";
    case VqError::read_after_write: return "device-readable descriptor after a writable one";
    case VqError::indirect_not_negotiated: return "indirect descriptor not negotiated";
    case VqError::indirect_nested: return "nested indirect descriptor";
    case VqError::indirect_len: return "indirect table length zero or not a multiple of 16";
    case VqError::indirect_with_next: return "indirect descriptor with NEXT";
    case VqError::indirect_outside_ram: return "indirect table outside guest RAM";
    case VqError::bad_push: return "device pushed an invalid head";
    }
    return "unknown";
}

void Virtqueue::reset()
{
    size_ = 0;
    desc_ = avail_ = used_ = 0;
    features_ = 0;
    enabled_ = false;
    err_ = VqError::none;
    err_info_ = 0;
    last_avail_ = shadow_avail_ = used_idx_ = notified_used_ = 0;
}

void Virtqueue::set_size(u32 size)
{
    if (!enabled_) size_ = size;
}

void Virtqueue::set_rings(u64 desc, u64 driver, u64 device)
{
    if (enabled_) return;
    desc_ = desc;
    avail_ = driver;
    used_ = device;
}

void Virtqueue::set_features(u64 negotiated)
{
    if (!enabled_) features_ = negotiated;
}

bool Virtqueue::fail(VqError e, u64 info)
{
    // The first reason is the one reported; the queue stays stopped until reset().
    if (err_ == VqError::none) {
        err_ = e;
        err_info_ = info;
    }
    enabled_ = false;
    return false;
}

bool Virtqueue::enable()
{
    if (enabled_) return true;
    if (err_ != VqError::none || !mem_) return false;
    if (!is_pow2(size_) || size_ > MAX_SIZE) return fail(VqError::bad_size, size_);
    if (desc_ % 16) return fail(VqError::ring_unaligned, desc_);
    if (avail_ % 2) return fail(VqError::ring_unaligned, avail_);
    if (used_ % 4) return fail(VqError::ring_unaligned, used_);
    // Checked once here; GuestMemory's extents never change while the guest runs,
    // so the reads below can only fail if this check was wrong (and then stop the queue).
    if (!mem_->contains(GuestPhys(desc_), DESC_SIZE * size_)) return fail(VqError::ring_outside_ram, desc_);
    if (!mem_->contains(GuestPhys(avail_), avail_bytes(size_))) return fail(VqError::ring_outside_ram, avail_);
    if (!mem_->contains(GuestPhys(used_), used_bytes(size_))) return fail(VqError::ring_outside_ram, used_);
    last_avail_ = shadow_avail_ = used_idx_ = notified_used_ = 0;
    enabled_ = true;
    return true;
}

bool Virtqueue::read16(u64 gpa, u16 &v)
{
    u8 b[2];
    if (!mem_->read(GuestPhys(gpa), b, 2)) return fail(VqError::ring_outside_ram, gpa);
    v = load_u16(b);
    return true;
}

bool Virtqueue::write16(u64 gpa, u16 v)
{
    const u8 b[2] = {u8(v), u8(v >> 8)};
    if (!mem_->write(GuestPhys(gpa), b, 2)) return fail(VqError::ring_outside_ram, gpa);
    return true;
}

bool Virtqueue::add_segment(Chain &c, u64 addr, u32 len, u16 flags)
{
    const bool writable = flags & DESC_F_WRITE;
    if (!writable && c.n != c.n_readable) return fail(VqError::read_after_write, c.head);
    if (c.n == Chain::MAX) return fail(VqError::chain_too_long, c.head);
    if (len && len - 1 > ~0ull - addr) return fail(VqError::addr_wrap, addr);
    if (!mem_->contains(GuestPhys(addr), len)) return fail(VqError::buffer_outside_ram, addr);
    if (c.readable + c.writable + len > MAX_CHAIN_BYTES) return fail(VqError::chain_too_big, c.head);
    c.seg[c.n++] = Segment{addr, len, writable};
    if (writable) c.writable += len;
    else {
        c.readable += len;
        c.n_readable++;
    }
    return true;
}

// An indirect table (2.7.5.3): its own descriptors, next indices relative to it.
bool Virtqueue::walk_indirect(Chain &c, u64 addr, u32 len)
{
    if (!(features_ & F_INDIRECT_DESC)) return fail(VqError::indirect_not_negotiated, c.head);
    if (!len || len % DESC_SIZE) return fail(VqError::indirect_len, len);
    const u32 entries = len / DESC_SIZE;
    if (entries > Chain::MAX) return fail(VqError::chain_too_long, c.head);
    if (len - 1 > ~0ull - addr) return fail(VqError::addr_wrap, addr);
    if (!mem_->contains(GuestPhys(addr), len)) return fail(VqError::indirect_outside_ram, addr);
    u32 i = 0;
    for (u32 steps = 1;; steps++) {
        if (steps > entries) return fail(VqError::chain_loop, c.head);
        u8 b[DESC_SIZE];
        if (!mem_->read(GuestPhys(addr + DESC_SIZE * i), b, DESC_SIZE))
            return fail(VqError::indirect_outside_ram, addr);
        const Desc d = decode(b);
        if (d.flags & DESC_F_INDIRECT) return fail(VqError::indirect_nested, c.head);
        if (!add_segment(c, d.addr, d.len, d.flags)) return false;
        if (!(d.flags & DESC_F_NEXT)) return true;
        if (d.next >= entries) return fail(VqError::desc_index, d.next);
        i = d.next;
    }
}

bool Virtqueue::pop(Chain &c)
{
    if (!enabled_) return false;
    if (last_avail_ == shadow_avail_) {
        if (!read16(avail_ + 2, shadow_avail_)) return false;
        if (u16(shadow_avail_ - last_avail_) > size_) return fail(VqError::avail_idx_jump, shadow_avail_);
        if (last_avail_ == shadow_avail_) return false;
    }
    // The driver wrote the ring entry and descriptors before idx (2.7.13); keep our
    // reads of them after our read of idx.
    __atomic_thread_fence(__ATOMIC_ACQUIRE);

    u16 head;
    if (!read16(avail_ + 4 + 2ull * (last_avail_ & (size_ - 1)), head)) return false;
    if (head >= size_) return fail(VqError::head_index, head);
    c.head = head;
    c.n = c.n_readable = 0;
    c.readable = c.writable = 0;

    u16 i = head;
    for (u32 steps = 1;; steps++) {
        // A chain in the table can visit each descriptor at most once.
        if (steps > size_) return fail(VqError::chain_loop, head);
        u8 b[DESC_SIZE];
        if (!mem_->read(GuestPhys(desc_ + DESC_SIZE * i), b, DESC_SIZE)) return fail(VqError::ring_outside_ram, desc_);
        const Desc d = decode(b);
        if (d.flags & DESC_F_INDIRECT) {
            // Only the last descriptor of a chain may refer to a table (2.7.5.3.1).
            if (d.flags & DESC_F_NEXT) return fail(VqError::indirect_with_next, i);
            if (!walk_indirect(c, d.addr, d.len)) return false;
            break;
        }
        if (!add_segment(c, d.addr, d.len, d.flags)) return false;
        if (!(d.flags & DESC_F_NEXT)) break;
        if (d.next >= size_) return fail(VqError::desc_index, d.next);
        i = d.next;
    }
    last_avail_++;
    return true;
}

bool Virtqueue::push(u16 head, u32 written)
{
    if (!enabled_) return false;
    if (head >= size_) return fail(VqError::bad_push, head);
    u8 e[8];
    for (unsigned k = 0; k < 4; k++) {
        e[k] = u8(u32(head) >> 8 * k);
        e[4 + k] = u8(written >> 8 * k);
    }
    const u64 slot = used_ + 4 + 8ull * (used_idx_ & (size_ - 1));
    if (!mem_->write(GuestPhys(slot), e, sizeof e)) return fail(VqError::ring_outside_ram, slot);
    // The element before the idx that publishes it (2.7.8.2).
    __atomic_thread_fence(__ATOMIC_RELEASE);
    used_idx_++;
    return write16(used_ + 2, used_idx_);
}

bool Virtqueue::needs_notify()
{
    if (!enabled_ || used_idx_ == notified_used_) return false;
    // Our used idx store must be visible before we read the driver's suppression
    // fields, or we could miss its request for an interrupt (store-load order:
    // a full fence even on x86).
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    const u16 old = notified_used_;
    notified_used_ = used_idx_;
    if (features_ & F_EVENT_IDX) {
        u16 event;
        if (!read16(avail_ + 4 + 2ull * size_, event)) return false;
        return need_event(event, used_idx_, old);
    }
    u16 flags;
    if (!read16(avail_, flags)) return false;
    return !(flags & AVAIL_F_NO_INTERRUPT);
}

void Virtqueue::set_avail_event(u16 idx)
{
    if (enabled_ && (features_ & F_EVENT_IDX)) (void)write16(used_ + 4 + 8ull * size_, idx);
}

void Virtqueue::set_no_notify(bool on)
{
    // With EVENT_IDX the driver ignores the flag (2.7.10); avail_event is the control.
    if (enabled_ && !(features_ & F_EVENT_IDX)) (void)write16(used_, on ? USED_F_NO_NOTIFY : 0);
}

bool Virtqueue::has_avail()
{
    if (!enabled_) return false;
    if (last_avail_ != shadow_avail_) return true;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    u16 idx;
    if (!read16(avail_ + 2, idx)) return false;
    return idx != last_avail_;
}

} // namespace virtio
