// The virtio-pci modern transport's registers (virtio 1.2 section 4.1).
#include "kernel/virtio/pci_transport.hpp"

#include "kernel/lib/format.hpp"

namespace virtio {

namespace {

// The common configuration structure as fields, the 64-bit ring addresses as
// two 32-bit halves; they tile [0, COMMON_BYTES) without a gap, so an access
// of any width is the bytes of the fields it overlaps.
struct Field {
    u8 off, width;
};
constexpr Field FIELDS[] = {
    {0x00, 4}, {0x04, 4}, {0x08, 4}, {0x0c, 4}, {0x10, 2}, {0x12, 2}, {0x14, 1},
    {0x15, 1}, {0x16, 2}, {0x18, 2}, {0x1a, 2}, {0x1c, 2}, {0x1e, 2}, {0x20, 4},
    {0x24, 4}, {0x28, 4}, {0x2c, 4}, {0x30, 4}, {0x34, 4}, {0x38, 2}, {0x3a, 2},
};

bool natural(u32 off, u8 size) { return (size == 1 || size == 2 || size == 4 || size == 8) && off % size == 0; }

u64 set_half(u64 v, bool high, u64 half)
{
    return high ? (v & 0xffffffffull) | half << 32 : (v & ~0xffffffffull) | (half & 0xffffffffull);
}

} // namespace

PciTransport::PciTransport(VirtioDevice &dev, GuestMemory &mem, IrqSink &irq, u16 msix_vectors)
    : dev_(dev), irq_(irq), msix_vectors_(msix_vectors), nq_(min<u16>(dev.num_queues(), MAX_QUEUES)),
      offered_(dev.features())
{
    for (Queue &q : q_) q.vq.attach(mem);
    reset();
}

// ---- register access ----

u64 PciTransport::read(Region r, u32 off, u8 size)
{
    if (!natural(off, size)) return 0;
    switch (r) {
    case Region::common: {
        Guard<Spinlock> g(lock_);
        return read_common(off, size);
    }
    case Region::isr: {
        if (off != 0) return 0;
        Guard<Spinlock> g(lock_);
        const u8 v = isr_;
        // Reading is the driver's acknowledgement (4.1.4.5.1): the line drops with it.
        isr_ = 0;
        if (v) irq_.lower_intx();
        return v;
    }
    case Region::device:
        return off < dev_.config_size() ? dev_.config_read(off, size) : 0;
    case Region::notify:
        return 0;
    }
    return 0;
}

void PciTransport::write(Region r, u32 off, u8 size, u64 value)
{
    if (!natural(off, size)) return;
    switch (r) {
    case Region::common: {
        Outbox out;
        {
            Guard<Spinlock> g(lock_);
            write_common(off, size, value, out);
        }
        send(out);
        return;
    }
    case Region::notify:
        {
            Guard<Spinlock> g(lock_);
            stats_.notifies++;
        }
        // The queue is the slot's (queue_notify_off(i) = i); a write inside a slot is not a notify.
        if (off % NOTIFY_MULTIPLIER == 0 && off / NOTIFY_MULTIPLIER < nq_) notify(u16(off / NOTIFY_MULTIPLIER), true);
        return;
    case Region::device:
        if (off < dev_.config_size()) dev_.config_write(off, size, value);
        return;
    case Region::isr:
        return;
    }
}

u32 PciTransport::region_bytes(Region r) const
{
    switch (r) {
    case Region::common: return COMMON_BYTES;
    case Region::notify: return u32(nq_) * NOTIFY_MULTIPLIER;
    case Region::isr: return ISR_BYTES;
    case Region::device: return dev_.config_size();
    }
    return 0;
}

u64 PciTransport::read_common(u32 off, u8 size)
{
    u64 v = 0;
    const u64 end = u64(off) + size;
    for (const Field &f : FIELDS) {
        if (f.off + f.width <= off || f.off >= end) continue;
        const u64 fv = field(f.off);
        for (u32 b = 0; b < f.width; b++)
            if (f.off + b >= off && f.off + b < end) v |= (fv >> 8 * b & 0xff) << 8 * (f.off + b - off);
    }
    return v;
}

void PciTransport::write_common(u32 off, u8 size, u64 value, Outbox &out)
{
    // Each field the access overlaps, in offset order, gets its current value
    // with the written bytes merged in: a byte write changes one byte of it.
    const u64 end = u64(off) + size;
    for (const Field &f : FIELDS) {
        if (f.off + f.width <= off || f.off >= end) continue;
        u64 fv = field(f.off);
        for (u32 b = 0; b < f.width; b++) {
            if (f.off + b < off || f.off + b >= end) continue;
            fv = (fv & ~(0xffull << 8 * b)) | (value >> 8 * (f.off + b - off) & 0xff) << 8 * b;
        }
        set_field(f.off, fv, out);
    }
}

u64 PciTransport::field(u32 off)
{
    using namespace common;
    switch (off) {
    case DEVICE_FEATURE_SELECT: return dev_select_;
    case DEVICE_FEATURE: return dev_select_ < 2 ? u32(offered_ >> 32 * dev_select_) : 0;
    case DRIVER_FEATURE_SELECT: return drv_select_;
    case DRIVER_FEATURE: return drv_select_ < 2 ? u32(driver_features_ >> 32 * drv_select_) : 0;
    case CONFIG_MSIX_VECTOR: return msix_config_;
    case NUM_QUEUES: return nq_;
    case DEVICE_STATUS: return status_;
    // No device model changes its configuration while the guest runs (a RAM disk
    // does not resize), so the generation stays 0 until one does.
    case CONFIG_GENERATION: return generation_;
    case QUEUE_SELECT: return queue_select_;
    }
    // A queue_select past the queues reads queue_size 0: "not available" (4.1.4.3).
    if (queue_select_ >= nq_) return 0;
    const Queue &q = q_[queue_select_];
    switch (off) {
    case QUEUE_SIZE: return q.size;
    case QUEUE_MSIX_VECTOR: return q.msix;
    case QUEUE_ENABLE: return q.enabled;
    case QUEUE_NOTIFY_OFF: return queue_select_;
    case QUEUE_DESC: return u32(q.desc);
    case QUEUE_DESC + 4: return q.desc >> 32;
    case QUEUE_DRIVER: return u32(q.driver);
    case QUEUE_DRIVER + 4: return q.driver >> 32;
    case QUEUE_DEVICE: return u32(q.device);
    case QUEUE_DEVICE + 4: return q.device >> 32;
    }
    return 0;   // queue_notify_data, queue_reset: their features are not offered
}

void PciTransport::set_field(u32 off, u64 v, Outbox &out)
{
    using namespace common;
    switch (off) {
    case DEVICE_FEATURE_SELECT: dev_select_ = u32(v); return;
    case DRIVER_FEATURE_SELECT: drv_select_ = u32(v); return;
    case DRIVER_FEATURE:
        // Once FEATURES_OK is set the negotiated set is what the queues run with.
        if (drv_select_ < 2 && !(status_ & STATUS_FEATURES_OK))
            driver_features_ = set_half(driver_features_, drv_select_ == 1, u32(v));
        return;
    case CONFIG_MSIX_VECTOR: msix_config_ = vector(v); return;
    case DEVICE_STATUS: set_status(u8(v), out); return;
    case QUEUE_SELECT: queue_select_ = u16(v); return;
    }
    if (queue_select_ >= nq_) return;
    Queue &q = q_[queue_select_];
    if (off == QUEUE_MSIX_VECTOR) {
        q.msix = vector(v);
        return;
    }
    if (off == QUEUE_ENABLE) {
        // Only a reset disables a queue (4.1.4.3.2): a 0 is ignored.
        if ((v & 1) && !q.enabled) enable_queue(queue_select_, out);
        return;
    }
    // The rest describes the rings: read-only once the queue runs.
    if (q.enabled) return;
    switch (off) {
    case QUEUE_SIZE: q.size = u16(v); return;
    case QUEUE_DESC: q.desc = set_half(q.desc, false, v); return;
    case QUEUE_DESC + 4: q.desc = set_half(q.desc, true, v); return;
    case QUEUE_DRIVER: q.driver = set_half(q.driver, false, v); return;
    case QUEUE_DRIVER + 4: q.driver = set_half(q.driver, true, v); return;
    case QUEUE_DEVICE: q.device = set_half(q.device, false, v); return;
    case QUEUE_DEVICE + 4: q.device = set_half(q.device, true, v); return;
    }
}

// ---- the status state machine (2.1, 3.1.1) ----

void PciTransport::set_status(u8 v, Outbox &out)
{
    if (v == 0) {
        stats_.resets++;
        reset();
        return;
    }
    // Bits only accumulate until a reset; DEVICE_NEEDS_RESET is the device's to set.
    u8 add = u8(v & ~status_ & ~STATUS_NEEDS_RESET);
    if (add & STATUS_FEATURES_OK) {
        // Refused by leaving the bit clear: the driver reads it back (3.1.1 step 6).
        const bool ok = (driver_features_ & F_VERSION_1) && !(driver_features_ & ~offered_);
        if (!ok) add &= u8(~STATUS_FEATURES_OK);
    }
    if ((add & STATUS_DRIVER_OK) && !((status_ | add) & STATUS_FEATURES_OK)) {
        status_ |= u8(add & ~STATUS_DRIVER_OK);
        fail(out, "DRIVER_OK before FEATURES_OK");
        return;
    }
    status_ |= add;
}

void PciTransport::enable_queue(u16 qi, Outbox &out)
{
    Queue &q = q_[qi];
    if (status_ & STATUS_NEEDS_RESET) return;
    if (!(status_ & STATUS_FEATURES_OK)) return fail(out, "queue %u enabled before FEATURES_OK", qi);
    const u16 max = dev_.queue_max_size();
    if (!is_pow2(q.size) || q.size > max)
        return fail(out, "queue %u size %u not a power of two <= %u", qi, q.size, max);
    VqError e;
    u64 info;
    {
        Guard<Spinlock> g(q.vq.lock());
        q.vq.reset();
        q.vq.set_size(q.size);
        q.vq.set_rings(q.desc, q.driver, q.device);
        q.vq.set_features(driver_features_);
        q.enabled = q.vq.enable();
        e = q.vq.error();
        info = q.vq.error_info();
    }
    if (!q.enabled) fail(out, "queue %u: %s (0x%llx)", qi, vq_error_text(e), (unsigned long long)info);
}

void PciTransport::reset()
{
    status_ = 0;
    if (isr_) irq_.lower_intx();
    isr_ = 0;
    dev_select_ = drv_select_ = 0;
    driver_features_ = 0;
    msix_config_ = NO_VECTOR;
    queue_select_ = 0;
    pending_ = 0;
    reason_[0] = 0;
    // Each queue's lock waits out a service() in progress: when the driver
    // reads status 0 back, no request of the old queues is still running.
    for (Queue &q : q_) {
        {
            Guard<Spinlock> g(q.vq.lock());
            q.vq.reset();
        }
        q.size = dev_.queue_max_size();
        q.msix = NO_VECTOR;
        q.enabled = false;
        q.desc = q.driver = q.device = 0;
    }
    dev_.reset();
}

void PciTransport::fail(Outbox &out, const char *fmt, ...)
{
    // The first reason is the one the driver's misstep produced; later ones are its echoes.
    if (status_ & STATUS_NEEDS_RESET) return;
    status_ |= STATUS_NEEDS_RESET;
    stats_.errors++;
    va_list ap;
    va_start(ap, fmt);
    vformat(reason_, sizeof reason_, fmt, ap);
    va_end(ap);
    irq_.needs_reset(reason_);
    // 2.1.2: a configuration change notification tells the driver to look at the status.
    interrupt(msix_config_, ISR_CONFIG, out);
}

// ---- notifies and interrupts ----

void PciTransport::interrupt(u16 vector, u8 isr_bit, Outbox &out)
{
    stats_.interrupts++;
    if (vector == NO_VECTOR || !irq_.vectors_enabled()) {
        isr_ |= isr_bit;
        irq_.raise_intx();
    } else if (out.n < sizeof out.vec / sizeof out.vec[0]) {
        out.vec[out.n++] = vector;
    }
}

void PciTransport::send(const Outbox &out)
{
    // A reset between the decision and here makes this a spurious interrupt, which
    // drivers tolerate; holding the lock instead would order it before the PCI function's.
    for (usize i = 0; i < out.n; i++) irq_.raise(out.vec[i]);
}

bool PciTransport::run_device(u16 q, Work fn, void *ctx) { return q < nq_ && fn && notify(q, false, fn, ctx); }

bool PciTransport::notify(u16 qi, bool guest, Work fn, void *ctx)
{
    Queue &q = q_[qi];
    Outbox out;
    bool run;
    {
        Guard<Spinlock> g(lock_);
        run = (status_ & STATUS_DRIVER_OK) && !(status_ & (STATUS_NEEDS_RESET | STATUS_FAILED)) && q.enabled;
        // A guest's notify before DRIVER_OK is a driver error (3.1.1: no buffers
        // before it); a re-run left pending across a reset is just dropped.
        if (guest && !(status_ & STATUS_DRIVER_OK)) fail(out, "notify of queue %u before DRIVER_OK", qi);
    }
    if (run) {
        // No transport lock here: the device takes the queue's.
        const Serviced s = fn ? fn(ctx, q.vq) : dev_.service(qi, q.vq);
        Guard<Spinlock> g(lock_);
        // A reset may have come in between. A queue it left disabled has nothing to
        // report. One the driver enabled again may have been serviced by this pass, so
        // its interrupt is raised (at worst a spurious one for the old queue's
        // completions) and the error read is the current queue's.
        if (q.enabled) {
            VqError e;
            u64 info;
            {
                Guard<Spinlock> gq(q.vq.lock());
                e = q.vq.error();
                info = q.vq.error_info();
            }
            if (e != VqError::none) {
                fail(out, "queue %u: %s (0x%llx)", qi, vq_error_text(e), (unsigned long long)info);
            } else {
                if (s.notify) interrupt(q.msix, ISR_QUEUE, out);
                if (s.again) {
                    pending_ |= 1u << qi;
                    if (signal_) __atomic_fetch_or(signal_, signal_bit_, __ATOMIC_RELEASE);
                }
            }
        }
    }
    send(out);
    return run;
}

bool PciTransport::run_pending()
{
    u32 p;
    {
        Guard<Spinlock> g(lock_);
        p = pending_;
        pending_ = 0;
    }
    for (u16 i = 0; i < nq_; i++)
        if (p & 1u << i) notify(i, false);
    Guard<Spinlock> g(lock_);
    return pending_ != 0;
}

// ---- the hypervisor's view ----

u8 PciTransport::status()
{
    Guard<Spinlock> g(lock_);
    return status_;
}

const char *PciTransport::last_error()
{
    Guard<Spinlock> g(lock_);
    return reason_;
}

TransportStats PciTransport::stats()
{
    Guard<Spinlock> g(lock_);
    return stats_;
}

} // namespace virtio
