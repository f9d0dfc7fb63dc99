// What a virtio transport (virtio-pci now, perhaps virtio-mmio later) needs from
// a device model: its identity, features, queues and configuration space, and
// a way to service one queue. The transport owns the registers, the status
// state machine and the virtqueues; the device only moves requests.
#pragma once

#include "kernel/virtio/virtqueue.hpp"

namespace virtio {

// Device IDs (5).
inline constexpr u16 DEVICE_ID_BLOCK = 2;

// What one service() pass did. `notify`: the engine says the driver wants an
// interrupt (Virtqueue::needs_notify). `again`: the pass ended at its budget
// with chains still available; service the queue again later.
struct Serviced {
    bool notify = false;
    bool again = false;
};

// A driver's read of `size` bytes at `off` of a device configuration laid out in
// b[0, len): little-endian, bytes past the end read as 0.
inline u64 config_window(const u8 *b, u32 len, u32 off, u8 size)
{
    u64 v = 0;
    for (unsigned i = 0; i < size && i < 8; i++)
        if (off < len && i < len - off) v |= u64(b[off + i]) << 8 * i;
    return v;
}

class VirtioDevice {
public:
    virtual u16 device_id() const = 0;
    virtual u64 features() const = 0;          // offered, VIRTIO_F_VERSION_1 included
    virtual u16 num_queues() const = 0;
    virtual u16 queue_max_size() const = 0;    // a power of two <= Virtqueue::MAX_SIZE
    virtual u32 config_size() const = 0;       // bytes of the device-specific configuration
    // `size` bytes at `off` of the configuration space, little-endian; 0 past its end.
    virtual u64 config_read(u32 off, u8 size) const = 0;
    virtual void config_write(u32 off, u8 size, u64 value) = 0;
    // A notify of queue `queue`, enabled and set up by the transport. Takes vq.lock().
    virtual Serviced service(u16 queue, Virtqueue &vq) = 0;
    // The driver reset the device (the transport has reset the queues).
    virtual void reset() = 0;

protected:
    ~VirtioDevice() = default;
};

} // namespace virtio
