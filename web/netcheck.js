// The pre-join network check against this server (signaling/netcheck.py): round trip, then
// download and upload throughput. Sizes grow until one transfer takes long enough to measure
// (or the server's limit is reached), so a fast link is not judged by a 100 ms burst and a slow
// one is not kept waiting. Results in bit/s and ms; `audioOnly` when either way is under the
// server's threshold (2 Mbps by default): the meeting would give this link sound only.

const MIN_BYTES = 128 << 10;
const TARGET_SECONDS = 0.8; // a transfer this long is measured well enough
const PINGS = 5;

function now() { return performance.now(); }

async function timed(fn) {
  const start = now();
  await fn();
  return (now() - start) / 1000;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function fetchOk(url, init) {
  const response = await fetch(url, { cache: 'no-store', ...init });
  if (!response.ok) {
    const err = new Error(`${response.status} ${await response.text()}`);
    err.status = response.status;
    throw err;
  }
  return response;
}

/** Grow the size until a transfer lasts TARGET_SECONDS; the last transfer's rate (bit/s). */
async function measure(transfer, maxBytes, rttSeconds) {
  let size = MIN_BYTES;
  let rate = 0;
  for (let round = 0; round < 6; round++) { // bounded: 128 KiB x 4^5 > any server limit
    const seconds = await timed(() => transfer(size));
    const useful = Math.max(seconds - rttSeconds, seconds / 2, 0.001);
    rate = (size * 8) / useful;
    if (seconds >= TARGET_SECONDS || size >= maxBytes) break;
    size = Math.min(maxBytes, size * 4);
  }
  return rate;
}

/**
 * Run the check. Returns {rttMs, downBps, upBps, thresholdBps, audioOnly}; throws on a server
 * refusal (429 when this address has used its budget: err.status).
 */
export async function checkNetwork({ base = '', onProgress = () => {} } = {}) {
  const infoResponse = await fetchOk(`${base}/api/netcheck`);
  const info = await infoResponse.json();
  const maxBytes = Math.max(MIN_BYTES, Number(info.max_bytes) || MIN_BYTES);
  const thresholdBps = Number(info.audio_only_below_bps) || 2_000_000;
  const rtts = [];
  for (let i = 0; i < PINGS; i++) {
    rtts.push(await timed(async () => { await (await fetchOk(`${base}/api/netcheck`)).json(); }));
  }
  const rtt = median(rtts);
  onProgress({ rttMs: rtt * 1000 });
  const downBps = await measure(async (size) => {
    const response = await fetchOk(`${base}/api/netcheck/down?bytes=${size}`);
    await response.arrayBuffer();
  }, maxBytes, rtt);
  onProgress({ rttMs: rtt * 1000, downBps });
  const payload = new Uint8Array(maxBytes);
  // Random content (crypto fills at most 64 KiB a call), so nothing on the way compresses it.
  for (let i = 0; i < payload.length; i += 65536) {
    crypto.getRandomValues(payload.subarray(i, Math.min(payload.length, i + 65536)));
  }
  const upBps = await measure(async (size) => {
    await (await fetchOk(`${base}/api/netcheck/up`, {
      method: 'POST', body: payload.subarray(0, size),
      headers: { 'Content-Type': 'application/octet-stream' },
    })).json();
  }, maxBytes, rtt);
  const result = {
    rttMs: Math.round(rtt * 1000), downBps: Math.round(downBps), upBps: Math.round(upBps),
    thresholdBps, audioOnly: Math.min(downBps, upBps) < thresholdBps,
  };
  onProgress(result);
  return result;
}
