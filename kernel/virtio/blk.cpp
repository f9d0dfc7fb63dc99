// virtio-blk requests over a backend (virtio 1.2 section 5.2).
#include "kernel/virtio/blk.hpp"

#include "kernel/lib/bytes.hpp"

namespace virtio {

namespace {

constexpr u64 HEADER_BYTES = 16;   // le32 type, le32 reserved, le64 sector
constexpr u64 RANGE_BYTES = 16;    // le64 sector, le32 num_sectors, le32 flags
constexpr u32 WRITE_ZEROES_F_UNMAP = 1;

// Calls f(gpa, n, pos) for the pieces of bytes [off, off + len) of the chain's
// readable (or writable) bytes, pos counting from off. False if f fails or the
// chain is shorter.
template <class F>
bool each_piece(const Chain &c, bool writable, u64 off, u64 len, F f)
{
    const usize end = writable ? c.n : c.n_readable;
    u64 pos = 0;
    for (usize i = writable ? c.n_readable : 0; i < end && len; i++) {
        const Segment &s = c.seg[i];
        if (off >= s.len) {
            off -= s.len;
            continue;
        }
        const u64 n = min<u64>(s.len - off, len);
        if (!f(GuestPhys(s.gpa + off), n, pos)) return false;
        pos += n;
        len -= n;
        off = 0;
    }
    return len == 0;
}

bool copy_out(GuestMemory &mem, const Chain &c, u64 off, void *dst, u64 len)
{
    u8 *d = static_cast<u8 *>(dst);
    return each_piece(c, false, off, len, [&](GuestPhys g, u64 n, u64 pos) { return mem.read(g, d + pos, n).ok(); });
}

bool copy_in(GuestMemory &mem, const Chain &c, u64 off, const void *src, u64 len)
{
    const u8 *s = static_cast<const u8 *>(src);
    return each_piece(c, true, off, len, [&](GuestPhys g, u64 n, u64 pos) { return mem.write(g, s + pos, n).ok(); });
}

// The data of a request, between a backend's pieces and the chain's readable
// (to the disk) or writable (from the disk) bytes starting at `base`. Backends
// hand pieces in order, so a cursor walks the chain once; a piece elsewhere
// seeks again from the start.
class ChainCopy final : public BlkBackend::Copy {
public:
    ChainCopy(GuestMemory &mem, const Chain &c, bool to_guest, u64 base)
        : mem_(mem), c_(c), to_guest_(to_guest), base_(base)
    {
        seek(0);
    }

    bool piece(u8 *host, u64 n, u64 pos) override
    {
        if (pos != pos_) seek(pos);
        const usize end = to_guest_ ? c_.n : c_.n_readable;
        for (u64 done = 0; done < n;) {
            if (i_ >= end) return false;
            const Segment &sg = c_.seg[i_];
            if (off_ >= sg.len) {
                i_++;
                off_ = 0;
                continue;
            }
            const u64 k = min<u64>(sg.len - off_, n - done);
            const GuestPhys g(sg.gpa + off_);
            if (!(to_guest_ ? mem_.write(g, host + done, k) : mem_.read(g, host + done, k)).ok()) return false;
            off_ += k;
            done += k;
        }
        pos_ = pos + n;
        return true;
    }

private:
    void seek(u64 pos)
    {
        i_ = to_guest_ ? c_.n_readable : 0;
        off_ = base_ + pos;
        pos_ = pos;
        const usize end = to_guest_ ? c_.n : c_.n_readable;
        while (i_ < end && off_ >= c_.seg[i_].len) off_ -= c_.seg[i_++].len;
    }

    GuestMemory &mem_;
    const Chain &c_;
    bool to_guest_;
    u64 base_;
    usize i_ = 0;
    u64 off_ = 0;      // into seg[i_]
    u64 pos_ = 0;      // the request's byte the cursor is at
};

} // namespace

BlkDevice::BlkDevice(u8 *disk, u64 bytes, bool readonly, u16 queues)
    : ram_(disk, bytes), be_(&ram_), sectors_(ram_.bytes() / BLK_SECTOR), ro_(readonly)
{
    init(queues);
}

BlkDevice::BlkDevice(BlkBackend &backend, bool readonly, u16 queues)
    : be_(&backend), sectors_(backend.bytes() / BLK_SECTOR), ro_(readonly)
{
    init(queues);
}

void BlkDevice::init(u16 queues)
{
    const u32 bs = be_->block_size();
    cfg_.capacity = sectors_;
    cfg_.seg_max = SEG_MAX;
    cfg_.blk_size = bs >= BLK_SECTOR && (bs & (bs - 1)) == 0 ? bs : u32(BLK_SECTOR);
    cfg_.num_queues = queues ? queues : 1;
    cfg_.max_discard_sectors = MAX_RANGE_SECTORS;
    cfg_.max_discard_seg = MAX_RANGES;
    cfg_.discard_sector_alignment = 1;
    cfg_.max_write_zeroes_sectors = MAX_RANGE_SECTORS;
    cfg_.max_write_zeroes_seg = MAX_RANGES;
    // 5.2.6.3: set only if write zeroes can deallocate; Keel's backends zero.
    cfg_.write_zeroes_may_unmap = 0;
    cfg_.writeback = 1;
    set_id("keel");
}

void BlkDevice::set_id(const char *id)
{
    usize i = 0;
    for (; id && id[i] && i < BLK_ID_BYTES; i++) id_[i] = u8(id[i]);
    for (; i < BLK_ID_BYTES; i++) id_[i] = 0;
}

u64 BlkDevice::features() const
{
    u64 f = F_VERSION_1 | F_INDIRECT_DESC | F_EVENT_IDX | BLK_F_SEG_MAX | BLK_F_BLK_SIZE | BLK_F_FLUSH | BLK_F_MQ;
    // Write-through is a choice only where writes can sit in a cache.
    if (be_->volatile_cache() && !ro_) f |= BLK_F_CONFIG_WCE;
    // A read-only disk neither discards nor zeroes: not offered rather than failed.
    return ro_ ? f | BLK_F_RO : f | BLK_F_DISCARD | BLK_F_WRITE_ZEROES;
}

u64 BlkDevice::config_read(u32 off, u8 size) const
{
    // The layout of 5.2.4, built on each read: config reads are rare (probe time).
    u8 b[BLK_CONFIG_SIZE] = {};
    store_le(b + 0, cfg_.capacity, 8);
    store_le(b + 12, cfg_.seg_max, 4);
    store_le(b + 20, cfg_.blk_size, 4);
    b[32] = __atomic_load_n(&cfg_.writeback, __ATOMIC_RELAXED);
    store_le(b + 34, cfg_.num_queues, 2);
    store_le(b + 36, cfg_.max_discard_sectors, 4);
    store_le(b + 40, cfg_.max_discard_seg, 4);
    store_le(b + 44, cfg_.discard_sector_alignment, 4);
    store_le(b + 48, cfg_.max_write_zeroes_sectors, 4);
    store_le(b + 52, cfg_.max_write_zeroes_seg, 4);
    b[56] = cfg_.write_zeroes_may_unmap;
    return config_window(b, BLK_CONFIG_SIZE, off, size);
}

void BlkDevice::config_write(u32 off, u8 size, u64 value)
{
    if (off == 32 && size == 1 && (features() & BLK_F_CONFIG_WCE))
        __atomic_store_n(&cfg_.writeback, u8(value ? 1 : 0), __ATOMIC_RELAXED);
}

BlkStats BlkDevice::stats() const
{
    BlkStats s;
    s.requests = __atomic_load_n(&stats_.requests, __ATOMIC_RELAXED);
    s.bytes_read = __atomic_load_n(&stats_.bytes_read, __ATOMIC_RELAXED);
    s.bytes_written = __atomic_load_n(&stats_.bytes_written, __ATOMIC_RELAXED);
    s.flushes = __atomic_load_n(&stats_.flushes, __ATOMIC_RELAXED);
    s.errors = __atomic_load_n(&stats_.errors, __ATOMIC_RELAXED);
    s.service_ticks = __atomic_load_n(&stats_.service_ticks, __ATOMIC_RELAXED);
    s.max_service_ticks = __atomic_load_n(&stats_.max_service_ticks, __ATOMIC_RELAXED);
    return s;
}

u8 BlkDevice::data_in(GuestMemory &mem, const Chain &c, u64 sector, u64 len)
{
    if (!aligned(sector, len)) return BLK_S_IOERR;
    ChainCopy to(mem, c, true, 0);
    if (len && !be_->read(sector * BLK_SECTOR, len, to)) return BLK_S_IOERR;
    count(stats_.bytes_read, len);
    return BLK_S_OK;
}

// Acknowledged only once the backend has the data; in write-through mode
// (CONFIG_WCE, writeback = 0) only once it is on media.
u8 BlkDevice::data_out(GuestMemory &mem, const Chain &c, u64 sector, u64 len)
{
    if (ro_ || !aligned(sector, len)) return BLK_S_IOERR;
    ChainCopy from(mem, c, false, HEADER_BYTES);
    if (len && !be_->write(sector * BLK_SECTOR, len, from)) return BLK_S_IOERR;
    if (!__atomic_load_n(&cfg_.writeback, __ATOMIC_RELAXED) && !be_->flush()) return BLK_S_IOERR;
    count(stats_.bytes_written, len);
    return BLK_S_OK;
}

// DISCARD and WRITE_ZEROES (5.2.6.2): every range is checked before any is
// zeroed, so a bad one leaves the disk as it was. Nothing is unmapped: a
// discarded range reads back as zeroes. Write-through flushes them as it does OUT.
u8 BlkDevice::zero_ranges(GuestMemory &mem, const Chain &c, u64 len, bool discard)
{
    if (ro_ || !len || len % RANGE_BYTES || len / RANGE_BYTES > MAX_RANGES) return BLK_S_IOERR;
    u8 raw[MAX_RANGES * RANGE_BYTES];
    if (!copy_out(mem, c, HEADER_BYTES, raw, len)) return BLK_S_IOERR;
    const usize n = len / RANGE_BYTES;
    for (usize i = 0; i < n; i++) {
        const u8 *r = raw + i * RANGE_BYTES;
        const u32 flags = load_u32(r + 12);
        if (discard ? flags != 0 : (flags & ~WRITE_ZEROES_F_UNMAP) != 0) return BLK_S_UNSUPP;
        const u32 sectors = load_u32(r + 8);
        if (sectors > MAX_RANGE_SECTORS || !aligned(load_u64(r), u64(sectors) * BLK_SECTOR)) return BLK_S_IOERR;
    }
    for (usize i = 0; i < n; i++) {
        const u8 *r = raw + i * RANGE_BYTES;
        const u64 bytes = u64(load_u32(r + 8)) * BLK_SECTOR;
        if (bytes && !be_->zero(load_u64(r) * BLK_SECTOR, bytes)) return BLK_S_IOERR;
    }
    // Zeroing writes the medium: in write-through mode it is on media before its status, as an OUT.
    if (!__atomic_load_n(&cfg_.writeback, __ATOMIC_RELAXED) && !be_->flush()) return BLK_S_IOERR;
    return BLK_S_OK;
}

u32 BlkDevice::execute(GuestMemory &mem, const Chain &c)
{
    count(stats_.requests, 1);
    if (!c.writable) {
        count(stats_.errors, 1);
        return 0;
    }
    const u64 in_len = c.writable - 1;   // the writable bytes before the status
    u64 written = 1;
    u8 status = BLK_S_IOERR;
    u8 hdr[HEADER_BYTES];
    if (c.readable >= HEADER_BYTES && copy_out(mem, c, 0, hdr, HEADER_BYTES)) {
        const u64 sector = load_u64(hdr + 8);
        const u64 out_len = c.readable - HEADER_BYTES;
        switch (load_u32(hdr)) {
        case BLK_T_IN:
            status = data_in(mem, c, sector, in_len);
            if (status == BLK_S_OK) written += in_len;
            break;
        case BLK_T_OUT:
            status = data_out(mem, c, sector, out_len);
            break;
        case BLK_T_FLUSH:
            // Every write acknowledged before this one is in the backend; this puts it on media.
            count(stats_.flushes, 1);
            status = be_->flush() ? BLK_S_OK : BLK_S_IOERR;
            break;
        case BLK_T_GET_ID: {
            const u64 n = min<u64>(in_len, BLK_ID_BYTES);
            status = copy_in(mem, c, 0, id_, n) ? BLK_S_OK : BLK_S_IOERR;
            if (status == BLK_S_OK) written += n;
            break;
        }
        case BLK_T_DISCARD:
        case BLK_T_WRITE_ZEROES:
            status = zero_ranges(mem, c, out_len, load_u32(hdr) == BLK_T_DISCARD);
            break;
        default:
            status = BLK_S_UNSUPP;
            break;
        }
    }
    if (status != BLK_S_OK) count(stats_.errors, 1);
    if (!copy_in(mem, c, in_len, &status, 1)) return 0;
    // The chain's bytes are at most MAX_CHAIN_BYTES, so this fits.
    return u32(written);
}

// Service time: the sum, and the longest (the queues of several vCPUs may race here).
void BlkDevice::account(u64 ticks)
{
    count(stats_.service_ticks, ticks);
    u64 m = __atomic_load_n(&stats_.max_service_ticks, __ATOMIC_RELAXED);
    while (ticks > m &&
           !__atomic_compare_exchange_n(&stats_.max_service_ticks, &m, ticks, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

BlkDevice::Serviced BlkDevice::service(Virtqueue &vq)
{
    Guard<Spinlock> g(vq.lock());
    Serviced r;
    GuestMemory *mem = vq.memory();
    if (!mem) return r;
    Chain &c = vq.scratch();
    for (u32 budget = vq.size(); vq.enabled();) {
        while (budget && vq.pop(c)) {
            budget--;
            const u64 t0 = clock_ ? clock_() : 0;
            const u32 used = execute(*mem, c);
            if (clock_) account(clock_() - t0);
            if (!vq.push(c.head, used)) break;
        }
        if (vq.error() != VqError::none) break;
        // Ask for a kick at the next buffer, then look once more: one made
        // available before the driver could see avail_event would get no kick.
        vq.set_avail_event(vq.last_avail());
        if (!vq.has_avail()) break;
        if (!budget) {
            r.again = true;
            break;
        }
    }
    r.notify = vq.needs_notify();
    return r;
}

} // namespace virtio
