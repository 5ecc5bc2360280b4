// Screen sharing: a second video source on the publisher connection (getDisplayMedia), one
// high layer, marked in `publish.screen_mids` so the server gives it top allocator priority and
// its top layer; every participant (the sharer too) shows it large on the stage above the grid.
// Stopping (the button, or the browser's own "stop sharing") turns its m-line inactive; the
// server then drops it for everyone (docs/protocol.md `publish`).
import { addStrings, t } from './i18n.js';

addStrings({
  vi: {
    shareScreen: 'Chia sẻ màn hình',
    stopShare: 'Dừng chia sẻ',
    screenOf: 'Màn hình của {name}',
    yourScreen: 'Màn hình bạn đang chia sẻ',
    shareFailed: 'Không chia sẻ được màn hình ({reason}).',
  },
  en: {
    shareScreen: 'Share screen',
    stopShare: 'Stop sharing',
    screenOf: '{name}\'s screen',
    yourScreen: 'The screen you are sharing',
    shareFailed: 'Could not share the screen ({reason}).',
  },
});

const SCREEN_MAX_BITRATE = 2_500_000; // text stays sharp at 1080p and 5-15 frames a second

export class ScreenShare {
  /**
   * @param {object} opts
   * @param {() => import('./session.js').Session|null} opts.session the current call's session
   * @param {(id: string) => string} opts.nameOf a participant's display name
   * @param {(text: string) => void} opts.notify shows a notice
   */
  constructor({ session, nameOf, notify }) {
    this.session = session;
    this.nameOf = nameOf;
    this.notify = notify;
    this.local = null; // {stream, transceiver} while we share
    this.remote = null; // {participant_id, track, mid} shown on the stage
    this.stage = null;
    this.button = null;
  }

  /** Add the button to the call controls and the stage above the grid (once per page). */
  mount(controls, grid) {
    if (this.button) return;
    this.button = document.createElement('button');
    this.button.type = 'button';
    this.button.id = 'share-btn';
    this.button.className = 'ctrl';
    this.button.setAttribute('aria-pressed', 'false');
    this.button.addEventListener('click', () => (this.local ? this.stop() : this.start()));
    const leave = controls.querySelector('#leave-btn');
    controls.insertBefore(this.button, leave);
    this.stage = document.createElement('div');
    this.stage.id = 'screen-stage';
    this.stage.className = 'screen-stage';
    this.stage.hidden = true;
    this.stageVideo = document.createElement('video');
    this.stageVideo.autoplay = true;
    this.stageVideo.playsInline = true;
    this.stageVideo.muted = true; // a screen has no sound here; the sharer's voice is its mic
    this.stageLabel = document.createElement('div');
    this.stageLabel.className = 'label';
    this.stage.append(this.stageVideo, this.stageLabel);
    grid.parentNode.insertBefore(this.stage, grid);
    this.render();
  }

  get supported() {
    return !!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  }

  async start() {
    const session = this.session();
    if (this.local || !session || !session.publisher) {
      if (session && !session.publisher) this.notify(t('shareFailed', { reason: 'no publisher' }));
      return false;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({
        video: { frameRate: { ideal: 15, max: 30 } }, audio: false,
      });
    } catch (err) {
      if (err.name !== 'NotAllowedError') this.notify(t('shareFailed', { reason: err.name || err }));
      return false;
    }
    const [track] = stream.getVideoTracks();
    if ('contentHint' in track) track.contentHint = 'detail';
    const transceiver = session.publisher.addTransceiver(track, {
      direction: 'sendonly', sendEncodings: [{ maxBitrate: SCREEN_MAX_BITRATE }],
    });
    this.local = { stream, transceiver };
    track.addEventListener('ended', () => this.stop());
    session.publishFields = () => (this.local && this.local.transceiver.mid
      ? { screen_mids: [this.local.transceiver.mid] } : {});
    this.render();
    try {
      await session.negotiatePublisher();
    } catch (err) {
      this.notify(t('shareFailed', { reason: err.code || err.message || err }));
      this.stop();
      return false;
    }
    return true;
  }

  async stop() {
    const local = this.local;
    if (!local) return;
    this.local = null;
    local.stream.getTracks().forEach((tr) => tr.stop());
    const session = this.session();
    this.render();
    if (!session || session.closed || !session.publisher) return;
    try {
      await local.transceiver.sender.replaceTrack(null);
      local.transceiver.direction = 'inactive';
      await session.negotiatePublisher();
    } catch (err) {
      console.warn('stopping the screen share', err);
    }
  }

  /** Take the screen tracks out of a track list (the rest goes to the grid); show them. */
  take(entries) {
    const screens = entries.filter((e) => e.source === 'screen' && e.kind === 'video');
    const first = screens.find((e) => e.track && e.track.readyState !== 'ended') || null;
    const changed = (first && first.mid) !== (this.remote && this.remote.mid);
    this.remote = first ? { participant_id: first.participant_id, track: first.track, mid: first.mid } : null;
    if (changed) this.render();
    return entries.filter((e) => !screens.includes(e));
  }

  /** The call ended: stop sharing, clear the stage. */
  reset() {
    if (this.local) this.local.stream.getTracks().forEach((tr) => tr.stop());
    this.local = null;
    this.remote = null;
    this.render();
  }

  render() {
    if (!this.button) return;
    const sharing = !!this.local;
    this.button.textContent = t(sharing ? 'stopShare' : 'shareScreen');
    this.button.setAttribute('aria-pressed', String(sharing));
    this.button.hidden = !this.supported;
    // Our own share shows from the local track (no round trip); a remote one from its track.
    const track = sharing ? this.local.stream.getVideoTracks()[0] : (this.remote && this.remote.track);
    const showing = !!track;
    this.stage.hidden = !showing;
    document.body.classList.toggle('has-screen', showing);
    if (!showing) {
      this.stageVideo.srcObject = null;
      delete this.stage.dataset.participantId;
      return;
    }
    const current = this.stageVideo.srcObject && this.stageVideo.srcObject.getVideoTracks()[0];
    if (current !== track) {
      this.stageVideo.srcObject = new MediaStream([track]);
      this.stageVideo.play().catch(() => {});
    }
    this.stage.dataset.participantId = sharing ? 'self' : this.remote.participant_id;
    this.stageLabel.textContent = sharing ? t('yourScreen')
      : t('screenOf', { name: this.nameOf(this.remote.participant_id) });
  }
}
