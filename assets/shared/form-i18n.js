// form-js in the page's language: Chinese unless <html lang> starts with "en".
// form-js 1.23 has no translation hook (bpmn-io/form-js#77), so its texts reach us three ways:
//   - fixed UI strings ("Select", "Search", ...): build.mjs routes them through translate();
//   - validation messages: FormI18nModule wraps the form's `validator` service;
//   - the date picker: flatpickr's own locale (flatpickr.localize).
import flatpickr from 'flatpickr';
import { Mandarin } from 'flatpickr/dist/l10n/zh.js';

const ZH_TEXT = {
  // selects, tag lists, dropdowns
  Select: '请选择',
  Search: '搜索',
  'No results': '无匹配项',
  'All values selected': '已全部选择',
  'Skip to search': '跳到搜索',
  'Remove tag': '移除',
  // date and time inputs (the date format is the zh-CN one, see dateLocale)
  'yyyy/mm/dd': '年/月/日',
  'hh:mm': '时:分',
  'hh:mm --': '时:分 上午/下午',
  'Date and time must both be entered.': '日期和时间须同时填写。',
  // numbers, tables, files, dynamic lists, iframes
  Increment: '增加',
  Decrement: '减少',
  'Nothing to show.': '暂无数据。',
  ' of ': ' / ',
  'Previous page': '上一页',
  'Next page': '下一页',
  Browse: '选择文件',
  'No files selected': '未选择文件',
  '{n} files selected': '已选择 {n} 个文件',
  'Add new': '添加',
  'Expand all ({n})': '全部展开（{n}）',
  Collapse: '收起',
  'Remove list item {n}': '删除第 {n} 项',
  'No content to show.': '暂无内容。',
  "External content couldn't be loaded.": '外部内容无法加载。',
  // the validator's fixed messages
  'Field is required.': '此项为必填项。',
  'Field must be a valid email.': '请输入有效的电子邮箱地址。',
  'Field must be a valid  international phone number. (e.g. +4930664040900)': '请输入有效的电话号码（国际格式，如 +8637412345678）。',
  'Value is not a number.': '请输入数字。',
  'Value is expected to be an integer.': '请输入整数。',
};

// The validator's messages that carry a value, as [English pattern, Chinese with $1, $2].
const ZH_PATTERNS = [
  [/^Field must match pattern .*\.$/s, '格式不正确。'],
  [/^Field must have minimum value of (.+)\.$/, '不能小于 $1。'],
  [/^Field must have maximum value of (.+)\.$/, '不能大于 $1。'],
  [/^Field must have minimum length of (.+)\.$/, '至少 $1 个字符。'],
  [/^Field must have maximum length of (.+)\.$/, '最多 $1 个字符。'],
  [/^Value is expected to have at most (\d+) decimal digits?\.$/, '最多 $1 位小数。'],
  [/^Please select a valid value, the two nearest valid values are (.+) and (.+)\.$/, '请输入有效值，最接近的两个有效值为 $1 和 $2。'],
];

// What flatpickr's Mandarin locale leaves English; weeks start on Monday (GB/T 7408).
const ZH_DATE_PICKER_EXTRA = {
  firstDayOfWeek: 1,
  monthAriaLabel: '月份',
  yearAriaLabel: '年份',
  hourAriaLabel: '时',
  minuteAriaLabel: '分',
};

/** 'en' when <html lang> starts with "en", else 'zh' (the app's default). */
export function uiLanguage() {
  return (document.documentElement.lang || '').toLowerCase().startsWith('en') ? 'en' : 'zh';
}

/** `text` (an English form-js string, "{n}" filled from `n`) in the page's language; unknown texts pass unchanged. */
export function translate(text, n) {
  let result = text;
  if (uiLanguage() === 'zh') {
    result = ZH_TEXT[text] ?? translateByPattern(text);
  }
  return n === undefined ? result : result.replace('{n}', String(n));
}

function translateByPattern(text) {
  for (const [pattern, chinese] of ZH_PATTERNS) {
    if (pattern.test(text)) {
      return text.replace(pattern, chinese);
    }
  }
  return text;
}

/** The locale whose date format form-js should use: zh-CN on Chinese pages, else the browser's. */
export function dateLocale() {
  return uiLanguage() === 'zh' ? 'zh-CN' : undefined;
}

// form-js exports no Validator class to extend, so the service is wrapped where it is made.
class FormI18n {
  constructor(validator) {
    const validate = validator.validateFieldInstance.bind(validator);
    validator.validateFieldInstance = (fieldInstance, value) => validate(fieldInstance, value).map((message) => translate(message));
    if (uiLanguage() === 'zh') {
      // flatpickr keeps one default locale for the page; form-js creates its pickers later.
      flatpickr.localize({ ...Mandarin, ...ZH_DATE_PICKER_EXTRA });
    }
  }
}
FormI18n.$inject = ['validator'];

/** A form-js module (additionalModules) putting validation messages and the date picker in the page's language. */
export const FormI18nModule = {
  __init__: ['formI18n'],
  formI18n: ['type', FormI18n],
};
