// The pre-join screen: pick camera, microphone and speaker, see yourself, hear a test sound,
// and check the network against the server before joining. Under the server's threshold
// (2 Mbps) it says plainly that the meeting will be sound only, and joins that way.
//
// Shown for links with `prejoin=1` and from the join form's "check devices" button.
// `openPrejoin({room, name, onJoin})` calls `onJoin({media, audioOnly, speakerId})`, where
// `media` resolves like getLocalMedia() (the previewed stream is handed over, not reopened).
import { addStrings, applyTranslations, t } from './i18n.js';
import { checkNetwork } from './netcheck.js';
import { formatMbps } from './bandwidth.js';

addStrings({
  vi: {
    prejoinTitle: 'Kiểm tra trước khi vào họp',
    prejoinCamera: 'Camera',
    prejoinMic: 'Micro',
    prejoinSpeaker: 'Loa',
    prejoinDefaultSpeaker: 'Loa mặc định của hệ thống',
    prejoinTestSound: 'Phát âm thanh thử',
    prejoinSoundPlaying: 'Đang phát âm thanh thử…',
    prejoinNetCheck: 'Kiểm tra mạng',
    prejoinChecking: 'Đang kiểm tra mạng…',
    prejoinNetResult: 'Tải xuống {down} Mbps · Tải lên {up} Mbps · Độ trễ {rtt} ms',
    prejoinAudioOnly: 'Dưới {mbps} Mbps: bạn sẽ vào họp chỉ với âm thanh.',
    prejoinVideoOk: 'Mạng đủ cho hình ảnh và âm thanh.',
    prejoinNetFailed: 'Không kiểm tra được mạng ({reason}).',
    prejoinJoin: 'Vào họp',
    prejoinOpen: 'Kiểm tra thiết bị và mạng',
    prejoinNoDevice: 'Không có thiết bị',
    prejoinMicLevel: 'Mức micro',
  },
  en: {
    prejoinTitle: 'Check before joining',
    prejoinCamera: 'Camera',
    prejoinMic: 'Microphone',
    prejoinSpeaker: 'Speaker',
    prejoinDefaultSpeaker: 'System default speaker',
    prejoinTestSound: 'Play a test sound',
    prejoinSoundPlaying: 'Playing a test sound…',
    prejoinNetCheck: 'Check network',
    prejoinChecking: 'Checking the network…',
    prejoinNetResult: 'Download {down} Mbps · Upload {up} Mbps · Round trip {rtt} ms',
    prejoinAudioOnly: 'Under {mbps} Mbps: you will join with sound only.',
    prejoinVideoOk: 'The network is good enough for video and sound.',
    prejoinNetFailed: 'Could not check the network ({reason}).',
    prejoinJoin: 'Join now',
    prejoinOpen: 'Check devices and network',
    prejoinNoDevice: 'No device',
    prejoinMicLevel: 'Microphone level',
  },
});

const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 } };

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  Object.assign(node.dataset, dataset || {});
  node.append(...children);
  return node;
}

function label(key, control) {
  return el('label', {}, [el('span', { dataset: { i18n: key }, textContent: t(key) }), control]);
}

/** Route every media element under `root` (now and later) to the chosen speaker. */
export function applySpeaker(root, speakerId) {
  if (!speakerId || !root) return null;
  const route = (media) => {
    if (typeof media.setSinkId === 'function' && media.sinkId !== speakerId) {
      media.setSinkId(speakerId).catch((err) => console.warn('setSinkId refused', err));
    }
  };
  root.querySelectorAll('video, audio').forEach(route);
  const observer = new MutationObserver(() => root.querySelectorAll('video, audio').forEach(route));
  observer.observe(root, { childList: true, subtree: true });
  return observer;
}

export function openPrejoin({ room, name, onJoin }) {
  const state = {
    stream: null, camera: '', mic: '', speaker: '', netcheck: null, testSound: false,
    micLevel: 0, audioContext: null, meterTimer: null, done: false,
  };
  const hook = window.diemcau ? (window.diemcau.prejoin = { state: 'open', room, name }) : {};

  const video = el('video', { autoplay: true, playsInline: true, muted: true, className: 'prejoin-video' });
  const cameraSel = el('select', { id: 'prejoin-camera' });
  const micSel = el('select', { id: 'prejoin-mic' });
  const speakerSel = el('select', { id: 'prejoin-speaker' });
  const meter = el('meter', { id: 'prejoin-meter', min: 0, max: 1, value: 0 });
  const soundBtn = el('button', { type: 'button', id: 'prejoin-sound', className: 'small-btn' });
  const netBtn = el('button', { type: 'button', id: 'prejoin-net', className: 'small-btn' });
  const netText = el('p', { id: 'prejoin-net-result', className: 'hint' });
  const verdict = el('p', { id: 'prejoin-verdict', className: 'prejoin-verdict', role: 'status' });
  const joinBtn = el('button', { type: 'button', id: 'prejoin-join', className: 'primary' });
  const section = el('section', { id: 'prejoin-view', className: 'card prejoin' }, [
    el('h1', { dataset: { i18n: 'prejoinTitle' } }),
    el('p', { className: 'prejoin-room', textContent: `${room} · ${name}` }),
    video,
    el('div', { className: 'prejoin-devices' }, [
      label('prejoinCamera', cameraSel), label('prejoinMic', micSel),
      label('prejoinMicLevel', meter), label('prejoinSpeaker', speakerSel),
    ]),
    el('div', { className: 'prejoin-actions' }, [soundBtn, netBtn]),
    netText, verdict, joinBtn,
  ]);
  soundBtn.dataset.i18n = 'prejoinTestSound';
  netBtn.dataset.i18n = 'prejoinNetCheck';
  joinBtn.dataset.i18n = 'prejoinJoin';
  const main = document.querySelector('main');
  const old = document.getElementById('prejoin-view');
  if (old) old.remove();
  for (const view of main.querySelectorAll(':scope > section')) view.hidden = true;
  main.append(section);
  applyTranslations(section);
  document.body.dataset.state = 'prejoin';

  function fill(select, devices, kind, current, fallbackKey) {
    select.replaceChildren();
    const list = devices.filter((d) => d.kind === kind);
    if (!list.length) select.append(new Option(t(fallbackKey), ''));
    list.forEach((d, i) => select.append(new Option(d.label || `${kind} ${i + 1}`, d.deviceId)));
    if (current && list.some((d) => d.deviceId === current)) select.value = current;
  }

  async function listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    fill(cameraSel, devices, 'videoinput', state.camera, 'prejoinNoDevice');
    fill(micSel, devices, 'audioinput', state.mic, 'prejoinNoDevice');
    const canRoute = typeof HTMLMediaElement.prototype.setSinkId === 'function';
    fill(speakerSel, canRoute ? devices : [], 'audiooutput', state.speaker, 'prejoinDefaultSpeaker');
    hook.devices = devices.map((d) => ({ kind: d.kind, label: d.label, id: d.deviceId }));
  }

  function startMeter(stream) {
    clearInterval(state.meterTimer);
    const track = stream && stream.getAudioTracks()[0];
    if (!track) return;
    try {
      state.audioContext = state.audioContext || new AudioContext();
      const analyser = state.audioContext.createAnalyser();
      analyser.fftSize = 512;
      state.audioContext.createMediaStreamSource(new MediaStream([track])).connect(analyser);
      const data = new Float32Array(analyser.fftSize);
      state.meterTimer = setInterval(() => {
        analyser.getFloatTimeDomainData(data);
        let sum = 0;
        for (const v of data) sum += v * v;
        state.micLevel = Math.min(1, Math.sqrt(sum / data.length) * 4);
        meter.value = state.micLevel;
        hook.micLevel = state.micLevel;
      }, 100);
    } catch (err) {
      console.warn('no microphone meter', err);
    }
  }

  async function openDevices() {
    const constraints = {
      audio: state.mic ? { deviceId: { exact: state.mic } } : true,
      video: state.camera ? { ...VIDEO, deviceId: { exact: state.camera } } : VIDEO,
    };
    if (state.stream) state.stream.getTracks().forEach((tr) => tr.stop());
    state.stream = null;
    try {
      state.stream = await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      try { state.stream = await navigator.mediaDevices.getUserMedia({ audio: constraints.audio }); }
      catch (_) { console.warn('no camera or microphone', err); }
    }
    video.srcObject = state.stream;
    if (state.stream) {
      video.play().catch(() => {});
      const [a] = state.stream.getAudioTracks();
      const [v] = state.stream.getVideoTracks();
      state.mic = a ? a.getSettings().deviceId || state.mic : state.mic;
      state.camera = v ? v.getSettings().deviceId || state.camera : state.camera;
    }
    await listDevices(); // labels are known once a device is open
    startMeter(state.stream);
    hook.previewing = !!(state.stream && state.stream.getVideoTracks().length);
  }

  /** A one-second two-tone chime through the chosen speaker. */
  async function playTestSound() {
    soundBtn.disabled = true;
    soundBtn.textContent = t('prejoinSoundPlaying');
    try {
      const ctx = state.audioContext || (state.audioContext = new AudioContext());
      await ctx.resume();
      const dest = ctx.createMediaStreamDestination();
      const gain = ctx.createGain();
      gain.gain.setValueAtTime(0.0001, ctx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.3, ctx.currentTime + 0.05);
      gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 1.0);
      gain.connect(dest);
      for (const [freq, at] of [[660, 0], [880, 0.35]]) {
        const osc = ctx.createOscillator();
        osc.frequency.value = freq;
        osc.connect(gain);
        osc.start(ctx.currentTime + at);
        osc.stop(ctx.currentTime + 1.0);
      }
      const audio = el('audio', { autoplay: true });
      audio.srcObject = dest.stream;
      if (state.speaker && audio.setSinkId) await audio.setSinkId(state.speaker);
      await audio.play();
      state.testSound = true;
      hook.testSound = { played: true, speaker: state.speaker || 'default' };
      await new Promise((resolve) => { setTimeout(resolve, 1100); });
      audio.srcObject = null;
    } catch (err) {
      console.warn('test sound failed', err);
      hook.testSound = { played: false, error: String(err) };
    } finally {
      soundBtn.disabled = false;
      soundBtn.textContent = t('prejoinTestSound');
    }
  }

  async function runNetcheck() {
    netBtn.disabled = true;
    netText.textContent = t('prejoinChecking');
    verdict.textContent = '';
    delete verdict.dataset.audioOnly;
    hook.netcheck = { state: 'running' };
    try {
      const result = await checkNetwork({
        onProgress: (p) => {
          if (p.downBps) netText.textContent = t('prejoinChecking') + ` ↓ ${formatMbps(p.downBps)} Mbps`;
        },
      });
      state.netcheck = result;
      hook.netcheck = { state: 'done', ...result };
      netText.textContent = t('prejoinNetResult', {
        down: formatMbps(result.downBps), up: formatMbps(result.upBps), rtt: result.rttMs,
      });
      verdict.textContent = result.audioOnly
        ? t('prejoinAudioOnly', { mbps: formatMbps(result.thresholdBps) }) : t('prejoinVideoOk');
      verdict.dataset.audioOnly = String(result.audioOnly);
    } catch (err) {
      hook.netcheck = { state: 'failed', error: String(err.message || err) };
      netText.textContent = t('prejoinNetFailed', { reason: err.status || err.message || err });
    } finally {
      netBtn.disabled = false;
    }
  }

  function close() {
    state.done = true;
    clearInterval(state.meterTimer);
    if (state.audioContext) state.audioContext.close().catch(() => {});
    section.remove();
  }

  cameraSel.addEventListener('change', () => { state.camera = cameraSel.value; openDevices(); });
  micSel.addEventListener('change', () => { state.mic = micSel.value; openDevices(); });
  speakerSel.addEventListener('change', () => {
    state.speaker = speakerSel.value;
    hook.speaker = state.speaker;
  });
  soundBtn.addEventListener('click', playTestSound);
  netBtn.addEventListener('click', runNetcheck);
  joinBtn.addEventListener('click', () => {
    const stream = state.stream;
    const audioOnly = !!(state.netcheck && state.netcheck.audioOnly);
    state.stream = null; // handed over: the call owns it now
    close();
    hook.state = 'joined';
    const missing = !stream ? 'all' : (!stream.getVideoTracks().length ? 'video'
      : (!stream.getAudioTracks().length ? 'audio' : null));
    onJoin({
      media: Promise.resolve({ stream, missing, reason: missing ? 'prejoin' : undefined }),
      audioOnly, speakerId: state.speaker || null,
    });
  });

  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', () => { if (!state.done) listDevices(); });
  }
  openDevices().then(runNetcheck);
  return { close };
}
