// virtio-net on a switch port: transmit on the sender's vCPU, receive by the
// sender's copy into this guest's buffers (see net.hpp).
#include "kernel/virtio/net.hpp"

#include "kernel/lib/bytes.hpp"

namespace virtio {
namespace {

void count(u64 &c, u64 n) { __atomic_fetch_add(&c, n, __ATOMIC_RELAXED); }

// A transmit chain's device-readable bytes after the virtio-net header: the frame,
// read through the sender's memory view.
class ChainFrame final : public net::FrameSource {
public:
    ChainFrame(const GuestMemory &mem, const Chain &c, u32 skip) : mem_(mem), c_(c), skip_(skip) {}

    bool read(u32 off, void *dst, u32 n) const override
    {
        u64 at = u64(off) + skip_;
        u8 *out = static_cast<u8 *>(dst);
        for (u16 i = 0; i < c_.n_readable && n; i++) {
            const Segment &s = c_.seg[i];
            if (at >= s.len) {
                at -= s.len;
                continue;
            }
            const u32 k = u32(min<u64>(s.len - at, n));
            if (!mem_.read(GuestPhys(s.gpa + at), out, k)) return false;
            out += k;
            n -= k;
            at = 0;
        }
        return n == 0;
    }

private:
    const GuestMemory &mem_;
    const Chain &c_;
    const u32 skip_;
};

void encode(const NetHdr &h, u8 *b)
{
    b[0] = h.flags;
    b[1] = h.gso_type;
    store_le(b + 2, h.hdr_len, 2);
    store_le(b + 4, h.gso_size, 2);
    store_le(b + 6, h.csum_start, 2);
    store_le(b + 8, h.csum_offset, 2);
    store_le(b + 10, h.num_buffers, 2);
}

NetHdr decode(const u8 *b)
{
    NetHdr h;
    h.flags = b[0];
    h.gso_type = b[1];
    h.hdr_len = load_u16(b + 2);
    h.gso_size = load_u16(b + 4);
    h.csum_start = load_u16(b + 6);
    h.csum_offset = load_u16(b + 8);
    h.num_buffers = load_u16(b + 10);
    return h;
}

} // namespace

u32 csum_add(const net::FrameSource &src, u32 from, u32 n, u32 sum, bool *ok)
{
    u8 buf[256];   // even: every chunk but the last keeps the 16-bit word alignment
    u64 s = sum;
    while (n) {
        const u32 k = min<u32>(n, sizeof buf);
        if (!src.read(from, buf, k)) {
            *ok = false;
            return 0;
        }
        for (u32 i = 0; i + 1 < k; i += 2) s += u32(buf[i]) << 8 | buf[i + 1];
        if (k & 1) s += u32(buf[k - 1]) << 8;
        from += k;
        n -= k;
    }
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    *ok = true;
    return u32(s);
}

NetDevice::NetDevice(const net::Mac &mac, u16 mtu, Clock clock) : mac_(mac), mtu_(mtu), clock_(clock) {}

u64 NetDevice::features() const
{
    return F_VERSION_1 | F_INDIRECT_DESC | F_EVENT_IDX | NET_F_CSUM | NET_F_GUEST_CSUM | NET_F_MTU | NET_F_MAC |
           NET_F_MRG_RXBUF | NET_F_STATUS;
}

u64 NetDevice::config_read(u32 off, u8 size) const
{
    u8 b[NET_CONFIG_SIZE] = {};
    for (unsigned i = 0; i < 6; i++) b[i] = mac_.b[i];
    store_le(b + 6, NET_S_LINK_UP, 2);
    store_le(b + 8, 1, 2);   // max_virtqueue_pairs
    store_le(b + 10, mtu_, 2);
    return config_window(b, NET_CONFIG_SIZE, off, size);
}

NetStats NetDevice::stats() const
{
    NetStats s;
    s.tx_malformed = __atomic_load_n(&stats_.tx_malformed, __ATOMIC_RELAXED);
    s.rx_too_big = __atomic_load_n(&stats_.rx_too_big, __ATOMIC_RELAXED);
    s.csum_completed = __atomic_load_n(&stats_.csum_completed, __ATOMIC_RELAXED);
    s.service_ticks = __atomic_load_n(&stats_.service_ticks, __ATOMIC_RELAXED);
    return s;
}

// A notify: the transmit queue sends what it has; the receive queue's notify (buffers
// added) needs nothing, as no frame waits for room.
Serviced NetDevice::service(u16 queue, Virtqueue &vq)
{
    Guard<Spinlock> g(vq.lock());
    Serviced r;
    GuestMemory *mem = vq.memory();
    if (!mem || queue != TX) return r;
    const u64 t0 = clock_ ? clock_() : 0;
    Chain &c = vq.scratch();
    for (u32 budget = vq.size(); vq.enabled();) {
        while (budget && vq.pop(c)) {
            budget--;
            transmit(*mem, c, vq.features());
            if (!vq.push(c.head, 0)) break;
        }
        if (vq.error() != VqError::none) break;
        vq.set_avail_event(vq.last_avail());
        if (!vq.has_avail()) break;
        if (!budget) {
            r.again = true;
            break;
        }
    }
    r.notify = vq.needs_notify();
    if (clock_) count(stats_.service_ticks, clock_() - t0);
    return r;
}

void NetDevice::transmit(GuestMemory &mem, const Chain &c, u64 features)
{
    u8 hb[NET_HDR_BYTES];
    const ChainFrame all(mem, c, 0);
    if (c.readable < NET_HDR_BYTES + net::ETH_HEADER || c.readable > NET_HDR_BYTES + 0xffffu ||
        !all.read(0, hb, sizeof hb)) {
        count(stats_.tx_malformed, 1);
        return;
    }
    const NetHdr h = decode(hb);
    const u32 len = u32(c.readable - NET_HDR_BYTES);
    const bool partial = h.flags & NET_HDR_F_NEEDS_CSUM;
    if (h.gso_type != NET_HDR_GSO_NONE ||
        (partial && (!(features & NET_F_CSUM) || u32(h.csum_start) + h.csum_offset + 2 > len))) {
        count(stats_.tx_malformed, 1);
        return;
    }
    const ChainFrame frame(mem, c, NET_HDR_BYTES);
    net::Frame f;
    if (!frame.read(0, f.header, net::ETH_HEADER)) {
        count(stats_.tx_malformed, 1);
        return;
    }
    f.len = len;
    f.src = &frame;
    NetHdr meta;   // what a receiver needs: only a partial checksum's place
    if (partial) {
        meta.flags = NET_HDR_F_NEEDS_CSUM;
        meta.csum_start = h.csum_start;
        meta.csum_offset = h.csum_offset;
    }
    f.meta = &meta;
    if (sw_) sw_->send(port_, f, clock_ ? clock_() : 0);
}

// ---- receive ----

// One frame on its way into this device: the virtio-net header, then the frame read
// from the sender with the completed checksum (if any) laid over its two bytes.
struct NetDevice::Rx final : net::FrameSource {
    NetDevice *dev;
    const net::Frame *f;
    u8 hdr[NET_HDR_BYTES];
    bool patch = false;
    u32 patch_at = 0;     // frame offset of the checksum field
    u8 patch_bytes[2];
    net::Delivery result = net::Delivery::no_room;

    // [off, off + n) of header + frame.
    bool read(u32 off, void *dst, u32 n) const override
    {
        u8 *out = static_cast<u8 *>(dst);
        while (n && off < NET_HDR_BYTES) {
            *out++ = hdr[off++];
            n--;
        }
        // The Ethernet header from the switch's copy, the one it checked: the sender's
        // other vCPUs may rewrite their buffer meanwhile (a source MAC changed after the
        // anti-spoofing check must not reach us).
        while (n && off < NET_HDR_BYTES + net::ETH_HEADER) {
            *out++ = f->header[off - NET_HDR_BYTES];
            off++;
            n--;
        }
        if (!n) return true;
        const u32 at = off - NET_HDR_BYTES;
        if (!f->src->read(at, out, n)) return false;
        if (patch)
            for (u32 i = 0; i < 2; i++)
                if (patch_at + i >= at && patch_at + i < at + n) out[patch_at + i - at] = patch_bytes[i];
        return true;
    }
};

net::Delivery NetDevice::deliver(const net::Frame &f)
{
    if (!transport_) return net::Delivery::no_room;
    Rx rx;
    rx.dev = this;
    rx.f = &f;
    // Not live (no driver yet, or reset): as a NIC that is down, the frame is lost.
    if (!transport_->run_device(RX, receive, &rx)) return net::Delivery::no_room;
    return rx.result;
}

Serviced NetDevice::receive(void *ctx, Virtqueue &vq)
{
    Rx &rx = *static_cast<Rx *>(ctx);
    NetDevice &d = *rx.dev;
    const net::Frame &f = *rx.f;
    Guard<Spinlock> g(vq.lock());
    Serviced r;
    GuestMemory *mem = vq.memory();
    if (!mem) return r;
    const u64 features = vq.features();
    const bool mrg = features & NET_F_MRG_RXBUF;
    const NetHdr &in = *static_cast<const NetHdr *>(f.meta);

    NetHdr out;
    if (in.flags & NET_HDR_F_NEEDS_CSUM) {
        if (features & NET_F_GUEST_CSUM) {
            out.flags = NET_HDR_F_NEEDS_CSUM;   // the receiver's stack finishes it (or its hardware would)
            out.csum_start = in.csum_start;
            out.csum_offset = in.csum_offset;
        } else {
            // The field holds the pseudo-header sum; the sum from csum_start on, folded
            // and inverted, is the checksum (what the sender's NIC would have written).
            bool ok;
            const u32 sum = csum_add(*f.src, in.csum_start, f.len - in.csum_start, 0, &ok);
            if (!ok) {
                rx.result = net::Delivery::error;
                return r;
            }
            const u16 c = u16(~sum);
            rx.patch = true;
            rx.patch_at = u32(in.csum_start) + in.csum_offset;
            rx.patch_bytes[0] = u8(c >> 8);
            rx.patch_bytes[1] = u8(c);
            count(d.stats_.csum_completed, 1);
        }
    }

    // How many buffers the frame takes: pop until it fits, then give them back and take
    // them again to fill (num_buffers, in the first one, is known before any is used).
    const u64 total = NET_HDR_BYTES + u64(f.len);
    Chain &c = vq.scratch();
    u16 k = 0;
    for (u64 room = 0; room < total;) {
        if (k == (mrg ? MAX_MERGE : 1)) {
            vq.unpop(k);
            count(d.stats_.rx_too_big, 1);
            rx.result = net::Delivery::error;
            return r;
        }
        if (!vq.pop(c)) {
            vq.unpop(k);
            rx.result = vq.error() != VqError::none ? net::Delivery::error : net::Delivery::no_room;
            return r;
        }
        k++;
        room += c.writable;
    }
    vq.unpop(k);
    out.num_buffers = k;
    encode(out, rx.hdr);

    // Fill them in order. The guest may have changed its ring since: then its frame
    // arrives cut short, in bounds all the same.
    u64 pos = 0;
    for (u16 i = 0; i < k && pos < total; i++) {
        if (!vq.pop(c)) break;
        u64 n = 0;
        for (u16 s = c.n_readable; s < c.n && pos < total; s++) {
            const Segment &seg = c.seg[s];
            const u32 m = u32(min<u64>(seg.len, total - pos));
            u8 *dst = mem->span(GuestPhys(seg.gpa), m);
            bool ok;
            if (dst) {
                ok = rx.read(u32(pos), dst, m);   // the one copy: sender's RAM into ours
            } else {
                // A buffer across two extents of our RAM: through a bounce buffer.
                u8 b[256];
                ok = true;
                for (u32 done = 0; ok && done < m;) {
                    const u32 step = min<u32>(m - done, sizeof b);
                    ok = rx.read(u32(pos + done), b, step) && mem->write(GuestPhys(seg.gpa + done), b, step);
                    done += step;
                }
            }
            if (!ok) {
                rx.result = net::Delivery::error;
                vq.push(c.head, u32(n));
                r.notify = vq.needs_notify();
                return r;
            }
            pos += m;
            n += m;
        }
        if (!vq.push(c.head, u32(n))) break;
    }
    rx.result = pos == total ? net::Delivery::ok : net::Delivery::error;
    r.notify = vq.needs_notify();
    return r;
}

} // namespace virtio
