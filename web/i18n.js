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
    account: 'Tài khoản',
    username: 'Tên đăng nhập',
    password: 'Mật khẩu',
    roomPassword: 'Mật khẩu phòng (nếu có)',
    takeOver: 'Chuyển phiên họp của tôi ở cửa sổ/thiết bị khác sang đây',
    useAccount: 'Đăng nhập bằng tài khoản thành viên',
    credHint: 'Phòng này cần giấy mời, hoặc tài khoản thành viên và mật khẩu phòng.',
    'err.room-full': 'Phòng đã đủ {limit} người. Vui lòng thử lại sau.',
    'err.room-locked': 'Chủ trì đã khóa phòng: không thể vào lúc này.',
    'err.token-expired': 'Liên kết tham gia đã hết hạn. Hãy xin giấy mời mới.',
    'err.bad-token': 'Liên kết tham gia không hợp lệ cho phòng này.',
    'err.bad-password': 'Sai tên đăng nhập, mật khẩu hoặc mật khẩu phòng (phân biệt chữ hoa, chữ thường).',
    'err.not-invited': 'Bạn chưa được mời vào phòng này: cần giấy mời, hoặc tài khoản thành viên của phòng.',
    'err.already-in-room': 'Tài khoản này đang họp ở phòng “{room}” (cửa sổ hoặc thiết bị khác). Chọn “chuyển phiên” để vào đây.',
    'err.no-such-room': 'Không có phòng “{room}” (tên phòng phân biệt chữ hoa, chữ thường).',
    'err.rate-limited': 'Thử sai quá nhiều lần. Thử lại sau {retry_after} giây.',
    'err.socket': 'Không kết nối được tới máy chủ.',
    'err.timeout': 'Máy chủ không trả lời kịp.',
    'err.other': 'Không vào được phòng ({code}).',
    lobbyTitle: 'Phòng chờ',
    lobbyWaiting: 'Đang chờ chủ trì cho vào…',
    'left.removed': 'Chủ trì đã mời bạn ra khỏi cuộc họp.',
    'left.ended': 'Chủ trì đã kết thúc cuộc họp.',
    'left.taken-over': 'Bạn đã vào phòng họp từ cửa sổ hoặc thiết bị khác; phiên này đã đóng.',
    'left.denied': 'Chủ trì không cho bạn vào phòng họp.',
    'left.server-shutdown': 'Máy chủ đang tắt; cuộc họp đã dừng.',
    hostMutedAudio: 'Chủ trì đã tắt micro của bạn.',
    hostMutedVideo: 'Chủ trì đã tắt camera của bạn.',
    roomLocked: 'Phòng đã khóa',
    pinned: 'Được ghim',
    recordingOn: 'Đang ghi hình',
    recordingStarted: 'Cuộc họp đang được ghi hình để lưu trữ.',
    recordingStopped: 'Đã dừng ghi hình.',
    recordingFailed: 'Ghi hình bị lỗi và đã dừng; cuộc họp vẫn tiếp tục.',
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
    account: 'Account',
    username: 'User name',
    password: 'Password',
    roomPassword: 'Room password (if any)',
    takeOver: 'Take over my session in another window or device',
    useAccount: 'Sign in with a member account',
    credHint: 'This room needs an invitation link, or a member account and the room password.',
    'err.room-full': 'The room is full ({limit} participants). Please try again later.',
    'err.room-locked': 'The host has locked the room: you cannot join now.',
    'err.token-expired': 'This join link has expired. Ask for a new invitation.',
    'err.bad-token': 'This join link is not valid for this room.',
    'err.bad-password': 'Wrong user name, password or room password (case-sensitive).',
    'err.not-invited': 'You are not invited to this room: use an invitation link or a member account of the room.',
    'err.already-in-room': 'This account is in a meeting in room “{room}” (another window or device). Choose “take over” to join here.',
    'err.no-such-room': 'There is no room “{room}” (room names are case-sensitive).',
    'err.rate-limited': 'Too many failed attempts. Try again in {retry_after} s.',
    'err.socket': 'Could not connect to the server.',
    'err.timeout': 'The server did not answer in time.',
    'err.other': 'Could not join the room ({code}).',
    lobbyTitle: 'Lobby',
    lobbyWaiting: 'Waiting for the host to let you in…',
    'left.removed': 'The host removed you from the meeting.',
    'left.ended': 'The host ended the meeting.',
    'left.taken-over': 'You joined this meeting from another window or device; this one was closed.',
    'left.denied': 'The host did not let you in.',
    'left.server-shutdown': 'The server is shutting down; the meeting stopped.',
    hostMutedAudio: 'The host muted your microphone.',
    hostMutedVideo: 'The host turned off your camera.',
    roomLocked: 'Room locked',
    pinned: 'Pinned',
    recordingOn: 'Recording',
    recordingStarted: 'This meeting is being recorded for the archive.',
    recordingStopped: 'Recording stopped.',
    recordingFailed: 'Recording failed and stopped; the meeting goes on.',
  },
};

/** Add strings (another page's: the operator console), `{vi: {...}, en: {...}}`. */
export function addStrings(more) {
  for (const [code, strings] of Object.entries(more)) Object.assign(STRINGS[code], strings);
}

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
