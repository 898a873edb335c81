#!/usr/bin/env python3
"""Helpers of scripts/interop.sh (Python standard library only).

  tone-wav PATH HZ SECONDS          8 kHz mono 16-bit WAV of a sine (baresip's aufile source)
  tone-pcap PATH HZ SECONDS         PCMU RTP in an Ethernet/IPv4/UDP pcap (SIPp play_pcap_audio)
  check-wav PATH HZ MIN_SECONDS     the decoded audio a baresip recorded holds the tone
  check-pcap PATH PORT HZ[,HZ...] MIN_SECONDS
                                    the PCMU RTP sent to UDP PORT in a capture holds each tone,
                                    one after the other in that order
  baresip-agent HOST:PORT LOG FIFO  one connection to baresip's ctrl_tcp (netstring JSON):
                                    events and command responses to LOG, one JSON object a
                                    line; each line "TOKEN COMMAND [PARAMS]" written to FIFO
                                    sent as a command; runs until killed

Tones are found with a Goertzel filter per 20 ms frame: a frame holds a tone when most of the
frame's energy is at that frequency (tones are multiples of 50 Hz, so each sits on a bin).
"""

import json
import math
import socket
import struct
import sys
import threading
import time
import wave

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
TONE_SHARE = 0.6  # share of a frame's energy at the tone's frequency
MIN_RMS = 200.0  # below this a frame is silence, whatever its spectrum


def ulaw_encode(sample):
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_decode(byte):
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if sign else magnitude


def sine(hz, seconds):
    count = int(RATE * seconds)
    return [int(12000 * math.sin(2 * math.pi * hz * n / RATE)) for n in range(count)]


def tone_wav(path, hz, seconds):
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(b"".join(struct.pack("<h", s) for s in sine(hz, seconds)))


def tone_pcap(path, hz, seconds):
    samples = sine(hz, seconds)
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        ssrc = 0x1A2B3C4D
        for index in range(len(samples) // FRAME):
            payload = bytes(ulaw_encode(s) for s in samples[index * FRAME:(index + 1) * FRAME])
            rtp = struct.pack("!BBHII", 0x80, 0, index & 0xFFFF, index * FRAME, ssrc) + payload
            udp = struct.pack("!HHHH", 10000, 20000, 8 + len(rtp), 0) + rtp
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index & 0xFFFF, 0, 64, 17,
                             0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
            frame = bytes(12) + b"\x08\x00" + ip
            at = index * 0.02
            out.write(struct.pack("<IIII", int(at), int((at % 1) * 1e6), len(frame), len(frame)))
            out.write(frame)


def goertzel_share(frame, hz):
    """Share of the frame's energy at `hz` (1.0 for a pure tone on the bin)."""
    energy = sum(s * s for s in frame)
    if energy == 0:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * hz / RATE)
    prev, prev2 = 0.0, 0.0
    for s in frame:
        prev, prev2 = s + coeff * prev - prev2, prev
    power = prev * prev + prev2 * prev2 - coeff * prev * prev2
    return power / (len(frame) / 2 * energy)


def tone_frames(frames, hz):
    """Times (s) of the frames holding the tone; frames are (time, samples)."""
    found = []
    for at, samples in frames:
        if len(samples) < FRAME:
            continue
        rms = math.sqrt(sum(s * s for s in samples) / len(samples))
        if rms >= MIN_RMS and goertzel_share(samples, hz) >= TONE_SHARE:
            found.append(at)
    return found


def describe(hz, times):
    if not times:
        return f"{hz} Hz: not heard"
    return (f"{hz} Hz: {len(times) * FRAME / RATE:.1f} s heard, "
            f"from {times[0]:.1f} s to {times[-1]:.1f} s")


def check_wav(path, hz, min_seconds):
    with wave.open(path, "rb") as src:
        if src.getframerate() != RATE or src.getsampwidth() != 2:
            sys.exit(f"{path}: expected 8 kHz 16-bit audio, got {src.getframerate()} Hz, "
                     f"{src.getsampwidth() * 8} bit")
        channels = src.getnchannels()
        raw = src.readframes(src.getnframes())
    samples = list(struct.unpack(f"<{len(raw) // 2}h", raw))[::channels]
    frames = [(i / RATE, samples[i:i + FRAME]) for i in range(0, len(samples), FRAME)]
    times = tone_frames(frames, hz)
    heard = len(times) * FRAME / RATE
    print(f"{path}: {len(samples) / RATE:.1f} s recorded; {describe(hz, times)}")
    if heard < min_seconds:
        sys.exit(f"FAIL: {path}: {hz} Hz heard for {heard:.1f} s, expected at least {min_seconds} s")


def pcap_rtp_payloads(path, port):
    """(time, PCMU payload) of the RTP packets to UDP `port` in a classic pcap."""
    with open(path, "rb") as src:
        data = src.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0xA1B2C3D4:
        endian, scale = "<", 1e-6
    elif magic == 0xA1B23C4D:
        endian, scale = "<", 1e-9
    else:
        sys.exit(f"{path}: not a classic little-endian pcap (magic {magic:#x})")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_header = {1: 14, 113: 16, 0: 4}.get(linktype)
    if link_header is None:
        sys.exit(f"{path}: unsupported link type {linktype}")
    out, offset, first = [], 24, None
    while offset + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        packet = data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen
        ip = packet[link_header:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 0x0F) * 4:]
        if len(udp) < 8 or struct.unpack("!H", udp[2:4])[0] != port:
            continue
        rtp = udp[8:]
        if len(rtp) < 12 or rtp[0] >> 6 != 2 or rtp[1] & 0x7F != 0:
            continue
        header = 12 + (rtp[0] & 0x0F) * 4
        if rtp[0] & 0x10 and len(rtp) >= header + 4:
            header += 4 + struct.unpack("!H", rtp[header + 2:header + 4])[0] * 4
        at = sec + frac * scale
        first = at if first is None else first
        out.append((at - first, rtp[header:]))
    return out


def check_pcap(path, port, tones, min_seconds):
    packets = pcap_rtp_payloads(path, port)
    frames = [(at, [ulaw_decode(b) for b in payload]) for at, payload in packets]
    print(f"{path}: {len(packets)} PCMU packets to port {port}")
    failures, previous_last = [], None
    for hz in tones:
        times = tone_frames(frames, hz)
        heard = len(times) * FRAME / RATE
        print(f"  {describe(hz, times)}")
        if heard < min_seconds:
            failures.append(f"{hz} Hz heard for {heard:.1f} s, expected at least {min_seconds} s")
        elif previous_last is not None and times[0] < previous_last:
            failures.append(f"{hz} Hz starts at {times[0]:.1f} s, before the previous tone "
                            f"ended ({previous_last:.1f} s)")
        if times:
            previous_last = times[-1]
    if failures:
        sys.exit(f"FAIL: {path}: " + "; ".join(failures))


def netstring(payload):
    return str(len(payload)).encode() + b":" + payload + b","


def read_netstrings(sock, buffer=b""):
    """Yield each netstring payload from `sock`; `buffer` holds bytes read ahead."""
    while True:
        while b":" not in buffer:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buffer += chunk
        length_text, rest = buffer.split(b":", 1)
        length = int(length_text)
        while len(rest) < length + 1:
            chunk = sock.recv(4096)
            if not chunk:
                return
            rest += chunk
        yield rest[:length]
        buffer = rest[length + 1:]


def address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def connect(target, limit_seconds):
    deadline = time.monotonic() + limit_seconds
    while True:
        try:
            return socket.create_connection(address(target), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"FAIL: baresip control port {target} never opened")
            time.sleep(0.1)


def baresip_agent(target, log_path, fifo_path):
    """baresip's ctrl_tcp serves one connection at a time: keep one open, log every event and
    command response to `log_path` (one JSON object a line) and send each line written to the
    FIFO `fifo_path` ("TOKEN COMMAND [PARAMS]") as a command."""
    sock = connect(target, 30)
    sock.settimeout(None)
    log = open(log_path, "a", buffering=1)

    def pump():
        for payload in read_netstrings(sock):
            log.write(json.dumps(json.loads(payload)) + "\n")
        log.write(json.dumps({"agent": "control connection closed"}) + "\n")

    threading.Thread(target=pump, daemon=True).start()
    while True:
        with open(fifo_path) as commands:
            for line in commands:
                parts = line.strip().split(" ", 2)
                if len(parts) < 2:
                    continue
                message = {"command": parts[1], "params": parts[2] if len(parts) > 2 else "",
                           "token": parts[0]}
                sock.sendall(netstring(json.dumps(message).encode()))


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    command, args = argv[1], argv[2:]
    if command == "tone-wav":
        tone_wav(args[0], int(args[1]), float(args[2]))
    elif command == "tone-pcap":
        tone_pcap(args[0], int(args[1]), float(args[2]))
    elif command == "check-wav":
        check_wav(args[0], int(args[1]), float(args[2]))
    elif command == "check-pcap":
        check_pcap(args[0], int(args[1]), [int(t) for t in args[2].split(",")], float(args[3]))
    elif command == "baresip-agent":
        baresip_agent(args[0], args[1], args[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
