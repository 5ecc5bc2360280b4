// DOM helpers of the operator console: elements, tables, forms and the API's errors shown next to
// the field they name (`{"error", "message", "field"}`).
import { lang, t } from './i18n.js';

export const $ = (id) => document.getElementById(id);

/** h('button', {class: 'x', onclick: fn, dataset: {a: 1}}, 'text', child...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** A table of `rows` (arrays of cells), or a line saying `emptyKey` when there are none. */
export function table(headKeys, rows, emptyKey, rowAttrs = () => ({})) {
  if (!rows.length) return h('p', { class: 'empty' }, t(emptyKey));
  return h('table', { class: 'list' },
    h('thead', {}, h('tr', {}, headKeys.map((k) => h('th', {}, k ? t(k) : '')))),
    h('tbody', {}, rows.map((cells, i) => h('tr', rowAttrs(i), cells.map((c) => h('td', {}, c))))));
}

export function fmtTime(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  return new Date(seconds * 1000).toLocaleString(lang() === 'vi' ? 'vi-VN' : 'en-GB', {
    dateStyle: 'short', timeStyle: 'short',
  });
}

/** The form's values by input name: checkboxes as booleans, number inputs as numbers. */
export function readForm(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === 'checkbox') out[el.name] = el.checked;
    else if (el.type === 'number') out[el.name] = el.value === '' ? null : Number(el.value);
    else out[el.name] = el.value.trim ? el.value.trim() : el.value;
  }
  return out;
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error, .form-error')) {
    el.textContent = '';
    el.hidden = true;
  }
  for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
}

const ERROR_KEYS = { unauthorized: 'sessionExpired', forbidden: 'forbidden' };

function errorText(err) {
  const key = ERROR_KEYS[err.error];
  return key && err.status !== 401 ? `${t(key)} ${err.message}` : err.message || String(err);
}

/**
 * Show an API error next to the field it names (`field`; a path like `until` or `account_ids`),
 * else at the form's `.form-error`. `fieldFor` maps an error code to a field (409 conflict: the
 * name already exists).
 */
export function showApiError(form, err, fieldFor = {}) {
  clearErrors(form);
  const field = err.field || fieldFor[err.error] || null;
  const base = field ? String(field).split(/[.[]/)[0] : null;
  const slot = base && form.querySelector(`.field-error[data-for="${base}"]`);
  const input = base && form.elements.namedItem(base);
  const target = slot || form.querySelector('.form-error');
  if (input && input.classList) {
    input.classList.add('invalid');
    input.focus();
  }
  if (!target) return;
  target.textContent = errorText(err);
  target.dataset.error = err.error || '';
  target.hidden = false;
}

/** Run `fn` for a form's submit: errors shown at their fields, the button busy meanwhile. */
export function onSubmit(form, fn, fieldFor = {}) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const button = form.querySelector('button[type=submit]');
    if (button) button.disabled = true;
    try {
      await fn(readForm(form));
    } catch (err) {
      showApiError(form, err, fieldFor);
    } finally {
      if (button) button.disabled = false;
    }
  });
}

/** A button that asks "Sure? Yes / No" in place before running `fn`. */
export function confirmButton(label, fn, { cls = 'danger', question = 'confirm', dataset } = {}) {
  const wrap = h('span', { class: 'confirm-wrap' });
  const ask = h('button', { type: 'button', class: `small ${cls}`, dataset }, label);
  const reset = () => wrap.replaceChildren(ask);
  ask.addEventListener('click', () => {
    wrap.replaceChildren(
      h('span', { class: 'question' }, t(question)),
      h('button', { type: 'button', class: `small ${cls}`, dataset: { confirm: 'yes' },
        onclick: () => { reset(); fn(); } }, t('yes')),
      h('button', { type: 'button', class: 'small', onclick: reset }, t('no')));
  });
  reset();
  return wrap;
}

/** A short status line (`#toast`): what just happened, or an error. */
let toastTimer = null;
export function toast(text, isError = false) {
  const el = $('toast');
  el.textContent = text;
  el.classList.toggle('error', isError);
  el.hidden = !text;
  clearTimeout(toastTimer);
  if (text) toastTimer = setTimeout(() => { el.hidden = true; }, isError ? 8000 : 3000);
}

/** Copy `text`; falls back to selecting `input` when the clipboard is refused (plain http). */
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    if (input) {
      input.focus();
      input.select();
      try { return document.execCommand('copy'); } catch (__) { return false; }
    }
    return false;
  }
}
