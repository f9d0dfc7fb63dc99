// virtio-blk (virtio 1.2 section 5.2) over a backend (a RAM disk, or Keel's
// own storage): the requests, the configuration space and the features,
// independent of the transport.
//
// A request is framed by bytes, not descriptors (2.6.4): its first 16
// device-readable bytes are the header, the rest of the readable bytes the data
// out; the last device-writable byte is the status, the writable bytes before it
// the data in. A chain without a 16-byte header gets IOERR; one without a
// writable byte cannot be answered and is returned with nothing written (both
// count as errors). A request that reaches past the disk, or writes a read-only
// one, gets IOERR before a byte moves. Data moves only through GuestMemory.
//
// A request's status is written only after its backend call returned: a write
// is acknowledged once the backend has it (for a device with a volatile cache,
// once the device completed the write; FLUSH puts that cache on media). With
// CONFIG_WCE (offered when the backend has a volatile cache) the driver may
// choose write-through: each write (OUT, and the zeroing of DISCARD and
// WRITE_ZEROES) is then flushed before its status.
//
// A RAM disk is a host buffer that must not be part of the guest's RAM. Queues of
// one disk are serviced in parallel (each under its own lock); overlapping
// requests in flight on two queues leave the overlap's contents unspecified, as
// on real hardware, and nothing else. The stats are atomic for that reason.
#pragma once

#include "kernel/virtio/device.hpp"
#include "kernel/virtio/virtqueue.hpp"

namespace virtio {

// Device-specific feature bits (5.2.3).
inline constexpr u64 BLK_F_SEG_MAX = 1ull << 2;
inline constexpr u64 BLK_F_RO = 1ull << 5;
inline constexpr u64 BLK_F_BLK_SIZE = 1ull << 6;
inline constexpr u64 BLK_F_FLUSH = 1ull << 9;
inline constexpr u64 BLK_F_CONFIG_WCE = 1ull << 11;
inline constexpr u64 BLK_F_MQ = 1ull << 12;
inline constexpr u64 BLK_F_DISCARD = 1ull << 13;
inline constexpr u64 BLK_F_WRITE_ZEROES = 1ull << 14;

// Request types and status values (5.2.6).
inline constexpr u32 BLK_T_IN = 0;
inline constexpr u32 BLK_T_OUT = 1;
inline constexpr u32 BLK_T_FLUSH = 4;
inline constexpr u32 BLK_T_GET_ID = 8;
inline constexpr u32 BLK_T_DISCARD = 11;
inline constexpr u32 BLK_T_WRITE_ZEROES = 13;
inline constexpr u8 BLK_S_OK = 0;
inline constexpr u8 BLK_S_IOERR = 1;
inline constexpr u8 BLK_S_UNSUPP = 2;

inline constexpr u64 BLK_SECTOR = 512;     // the unit of capacity and sector, whatever blk_size says
inline constexpr usize BLK_ID_BYTES = 20;

// The configuration space fields Keel fills (5.2.4); the others read as 0.
struct BlkConfig {
    u64 capacity = 0;                  // in 512-byte sectors
    u32 seg_max = 0;
    u32 blk_size = 0;
    u16 num_queues = 0;
    u32 max_discard_sectors = 0;
    u32 max_discard_seg = 0;
    u32 discard_sector_alignment = 0;
    u32 max_write_zeroes_sectors = 0;
    u32 max_write_zeroes_seg = 0;
    u8  write_zeroes_may_unmap = 0;
    u8  writeback = 1;                 // CONFIG_WCE: 1 write-back (the default), 0 write-through
};
// Bytes of the layout up to write_zeroes_may_unmap and its padding (no secure
// erase, no zoned fields: those features are not offered).
inline constexpr u32 BLK_CONFIG_SIZE = 60;

struct BlkStats {
    u64 requests = 0;       // chains taken
    u64 bytes_read = 0;     // disk -> guest (IN)
    u64 bytes_written = 0;  // guest -> disk (OUT)
    u64 flushes = 0;
    u64 errors = 0;         // IOERR, UNSUPP, or no status byte to answer in
    u64 service_ticks = 0;  // the requests' execution time, in clock ticks (0 without a clock)
    u64 max_service_ticks = 0;
};

// Where a disk's bytes live. Offsets and lengths are bytes, multiples of
// block_size(), inside bytes() (BlkDevice checks before it calls). Data moves
// in pieces through a Copy, so a backend can stage it in its own buffers.
class BlkBackend {
public:
    class Copy {
    public:
        // read: `host` holds the next n bytes for the guest; write: fill `host`
        // with them. pos counts from the start of the request's data.
        virtual bool piece(u8 *host, u64 n, u64 pos) = 0;

    protected:
        ~Copy() = default;
    };

    virtual u64 bytes() const = 0;
    virtual u32 block_size() const = 0;
    // Writes may sit in a volatile cache until flush().
    virtual bool volatile_cache() const = 0;
    virtual Status read(u64 off, u64 len, Copy &to_guest) = 0;
    virtual Status write(u64 off, u64 len, Copy &from_guest) = 0;
    virtual Status flush() = 0;
    // The range reads back as zeroes afterwards (DISCARD and WRITE_ZEROES).
    virtual Status zero(u64 off, u64 len) = 0;

protected:
    ~BlkBackend() = default;
};

// A disk in host memory: one piece per request, no cache.
class RamBackend final : public BlkBackend {
public:
    RamBackend(u8 *disk, u64 bytes) : disk_(disk), bytes_(disk ? bytes / 512 * 512 : 0) {}
    u64 bytes() const override { return bytes_; }
    u32 block_size() const override { return 512; }
    bool volatile_cache() const override { return false; }
    Status read(u64 off, u64 len, Copy &to) override { return to.piece(disk_ + off, len, 0) ? Status() : Err::invalid; }
    Status write(u64 off, u64 len, Copy &from) override
    {
        return from.piece(disk_ + off, len, 0) ? Status() : Err::invalid;
    }
    Status flush() override { return {}; }
    Status zero(u64 off, u64 len) override
    {
        __builtin_memset(disk_ + off, 0, len);
        return {};
    }

private:
    u8 *disk_;
    u64 bytes_;
};

class BlkDevice {
public:
    // Data segments a request may have besides header and status: a chain holds
    // at most Chain::MAX descriptors.
    static constexpr u32 SEG_MAX = Chain::MAX - 2;
    // Discard and write-zeroes: ranges per request and sectors per range, so
    // that one request zeroes at most Virtqueue::MAX_CHAIN_BYTES, as IN/OUT move.
    static constexpr u32 MAX_RANGES = 8;
    static constexpr u32 MAX_RANGE_SECTORS = Virtqueue::MAX_CHAIN_BYTES / BLK_SECTOR / MAX_RANGES;

    // A disk of `bytes` (rounded down to sectors) at host address `disk`;
    // `queues` request queues (1..65535, offered through MQ).
    BlkDevice(u8 *disk, u64 bytes, bool readonly, u16 queues = 1);
    // A disk on `backend` (which must outlive the device).
    BlkDevice(BlkBackend &backend, bool readonly, u16 queues = 1);
    BlkDevice(const BlkDevice &) = delete;
    BlkDevice &operator=(const BlkDevice &) = delete;

    // The serial GET_ID answers (up to 20 bytes, zero padded; default "keel").
    void set_id(const char *id);

    // What the device offers (the transport masks what the driver accepts into
    // each queue's set_features()).
    u64 features() const;
    const BlkConfig &config() const { return cfg_; }
    // `size` bytes (1, 2, 4 or 8) of the configuration space at `off`,
    // little-endian; bytes past the layout read as 0.
    u64 config_read(u32 off, u8 size) const;
    // The driver's configuration write: only `writeback` (CONFIG_WCE) is
    // writable; anything else is ignored, as the field is read-only (5.2.4).
    void config_write(u32 off, u8 size, u64 value);
    // Device reset: the configuration back to its defaults (write-back).
    void reset() { __atomic_store_n(&cfg_.writeback, u8(1), __ATOMIC_RELAXED); }

    // A notify of `vq`: take every available chain, execute it, return it.
    // `notify`: interrupt the driver. `again`: the batch ended at its budget
    // (size chains, so another vCPU refilling the queue cannot hold this one in
    // Keel for ever) with chains still available; call service() again later.
    // A malformed queue stops with vq.error() set: the transport sets
    // DEVICE_NEEDS_RESET. Takes vq.lock().
    using Serviced = virtio::Serviced;
    Serviced service(Virtqueue &vq);

    BlkStats stats() const;
    // The clock service times are read from (the kernel: the TSC). Set before the
    // first request; without one, service_ticks stays 0.
    using Clock = u64 (*)();
    void set_clock(Clock clock) { clock_ = clock; }
    bool readonly() const { return ro_; }

private:
    // One request; returns the bytes written into the chain (the used length).
    u32 execute(GuestMemory &mem, const Chain &c);
    u8 data_in(GuestMemory &mem, const Chain &c, u64 sector, u64 len);
    u8 data_out(GuestMemory &mem, const Chain &c, u64 sector, u64 len);
    u8 zero_ranges(GuestMemory &mem, const Chain &c, u64 len, bool discard);
    bool in_disk(u64 sector, u64 sectors) const { return sector <= sectors_ && sectors <= sectors_ - sector; }
    // A byte range the backend can take: whole blocks inside the disk.
    bool aligned(u64 sector, u64 len) const
    {
        return (sector * BLK_SECTOR | len) % cfg_.blk_size == 0 && len % BLK_SECTOR == 0 &&
               in_disk(sector, len / BLK_SECTOR);
    }
    void init(u16 queues);
    void account(u64 ticks);
    void count(u64 &counter, u64 n) { __atomic_fetch_add(&counter, n, __ATOMIC_RELAXED); }

    RamBackend ram_{nullptr, 0};
    BlkBackend *be_;
    u64 sectors_;
    bool ro_;
    BlkConfig cfg_;
    u8 id_[BLK_ID_BYTES] = {};
    BlkStats stats_;
    Clock clock_ = nullptr;
};

// BlkDevice as a transport sees it.
class BlkVirtio final : public VirtioDevice {
public:
    // Linux allocates what the device offers; 256 entries (like QEMU) keep a
    // queue's rings in a few pages and bound one service() batch to 256 chains.
    static constexpr u16 QUEUE_SIZE = 256;

    explicit BlkVirtio(BlkDevice &blk) : blk_(blk) {}
    u16 device_id() const override { return DEVICE_ID_BLOCK; }
    u64 features() const override { return blk_.features(); }
    u16 num_queues() const override { return blk_.config().num_queues; }
    u16 queue_max_size() const override { return QUEUE_SIZE; }
    u32 config_size() const override { return BLK_CONFIG_SIZE; }
    u64 config_read(u32 off, u8 size) const override { return blk_.config_read(off, size); }
    // Only writeback (CONFIG_WCE) is writable (5.2.4).
    void config_write(u32 off, u8 size, u64 v) override { blk_.config_write(off, size, v); }
    Serviced service(u16, Virtqueue &vq) override { return blk_.service(vq); }
    // Nothing is in flight between notifies: a request completes inside service().
    void reset() override { blk_.reset(); }

private:
    BlkDevice &blk_;
};

} // namespace virtio
