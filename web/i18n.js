// Vietnamese and English strings. Vietnamese is the default when the browser prefers it.

const STRINGS = {
  vi: {
    appName: 'Điểm Cầu',
    room: 'Phòng',
    displayName: 'Tên hiển thị',
    join: 'Tham gia',
    joinTitle: 'Tham gia cuộc họp',
    joinHint: 'Tên phòng phân biệt chữ hoa và chữ thường.',
    leave: 'Rời phòng',
    mic: 'Micro',
    camera: 'Camera',
    turnOff: 'Tắt',
    turnOn: 'Bật',
    you: '(bạn)',
    joining: 'Đang tham gia…',
    leftRoom: 'Bạn đã rời phòng.',
    rejoin: 'Tham gia lại',
    connectionLost: 'Mất kết nối tới máy chủ.',
    mediaFailed: 'Kết nối âm thanh/hình ảnh thất bại ({which}).',
    noMedia: 'Không dùng được camera hoặc micro ({reason}). Bạn vẫn tham gia nhưng chỉ xem và nghe.',
    noCamera: 'Không dùng được camera: chỉ gửi âm thanh.',
    noMic: 'Không dùng được micro: chỉ gửi hình ảnh.',
    micMuted: 'Micro đang tắt',
    cameraOff: 'Camera đang tắt',
    enableSound: 'Bật âm thanh',
    soundBlocked: 'Trình duyệt chặn tự phát âm thanh.',
    error: 'Lỗi',
    close: 'Đóng',
    language: 'Ngôn ngữ',
    copyLink: 'Sao chép liên kết',
    linkCopied: 'Đã sao chép liên kết.',
    participants: '{n} người trong phòng',
    fieldRequired: 'Cần nhập phòng và tên hiển thị (1–64 ký tự).',
    unsupported: 'Trình duyệt này không hỗ trợ WebRTC.',
    audioOnly: 'Chỉ âm thanh',
    audioOnlyUser: 'Chỉ âm thanh (bạn đã chọn)',
    audioOnlyDown: 'Âm thanh: băng thông dưới {mbps} Mbps',
    audioOnlyUp: 'Chỉ gửi âm thanh: đường lên dưới {mbps} Mbps',
  },
  en: {
    appName: 'Điểm Cầu',
    room: 'Room',
    displayName: 'Display name',
    join: 'Join',
    joinTitle: 'Join a meeting',
    joinHint: 'Room names are case-sensitive.',
    leave: 'Leave',
    mic: 'Microphone',
    camera: 'Camera',
    turnOff: 'Turn off',
    turnOn: 'Turn on',
    you: '(you)',
    joining: 'Joining…',
    leftRoom: 'You left the room.',
    rejoin: 'Rejoin',
    connectionLost: 'Lost the connection to the server.',
    mediaFailed: 'The audio/video connection failed ({which}).',
    noMedia: 'Camera or microphone unavailable ({reason}). You joined to watch and listen only.',
    noCamera: 'Camera unavailable: sending audio only.',
    noMic: 'Microphone unavailable: sending video only.',
    micMuted: 'Microphone muted',
    cameraOff: 'Camera off',
    enableSound: 'Enable sound',
    soundBlocked: 'The browser blocked sound from playing automatically.',
    error: 'Error',
    close: 'Close',
    language: 'Language',
    copyLink: 'Copy link',
    linkCopied: 'Link copied.',
    participants: '{n} in the room',
    fieldRequired: 'Enter a room and a display name (1–64 characters).',
    unsupported: 'This browser does not support WebRTC.',
    audioOnly: 'Audio only',
    audioOnlyUser: 'Audio only (your choice)',
    audioOnlyDown: 'Audio only: bandwidth below {mbps} Mbps',
    audioOnlyUp: 'Sending audio only: uplink below {mbps} Mbps',
  },
};

export const LANGUAGES = { vi: 'Tiếng Việt', en: 'English' };
const STORAGE_KEY = 'diemcau.lang';
const listeners = [];

function detect() {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved && STRINGS[saved]) return saved;
  } catch (_) { /* storage may be disabled */ }
  const prefs = navigator.languages && navigator.languages.length
    ? navigator.languages : [navigator.language || 'en'];
  return String(prefs[0] || 'en').toLowerCase().startsWith('vi') ? 'vi' : 'en';
}

let current = detect();

export function lang() {
  return current;
}

/** Translate `key`, replacing `{name}` placeholders from `params`. */
export function t(key, params = {}) {
  const text = (STRINGS[current] && STRINGS[current][key]) ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

/** Fill every element with `data-i18n` (text) or `data-i18n-title` / `-placeholder` / `-aria`. */
export function applyTranslations(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll('[data-i18n-aria]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nAria));
  }
}

export function setLang(code) {
  if (!STRINGS[code] || code === current) return;
  current = code;
  try { localStorage.setItem(STORAGE_KEY, code); } catch (_) { /* ignore */ }
  applyTranslations();
  for (const fn of listeners) fn(code);
}

export function onLangChange(fn) {
  listeners.push(fn);
}
