// Studio pages (served by webapp/pages/studio.py; no build step, ES2017 for Chrome 90):
// wide layout, validate and deploy buttons around the modeler bundle, and pickers of real
// groups and forms for the Camunda properties panel. Needs bpmn-modeler.js on the page.
(function () {
  'use strict';

  var ERROR_MARKER = 'cx-error';

  if (document.querySelector('[data-studio-wide]')) {
    var main = document.querySelector('main.app-main');
    if (main) {
      main.classList.add('is-wide');
    }
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') : '';
  }

  function post(url, body, contentType) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': contentType, 'X-CSRFToken': csrfToken(), Accept: 'application/json' },
      body: body,
    });
  }

  // The properties panel is re-rendered by preact: attach the pickers whenever inputs appear.
  var PICKERS = {
    'bio-properties-panel-candidateGroups': 'cx-groups',
    'bio-properties-panel-formRef': 'cx-forms',
    'bio-properties-panel-formKey': 'cx-forms',
  };
  function attachPickers(root) {
    Object.keys(PICKERS).forEach(function (id) {
      var input = root.querySelector('#' + id);
      if (input && document.getElementById(PICKERS[id]) && input.getAttribute('list') !== PICKERS[id]) {
        input.setAttribute('list', PICKERS[id]);
      }
    });
  }

  function modelerOf(container) {
    return container ? container.chengxinModeler : null;
  }

  function setupEditor(toolbar) {
    var container = document.querySelector('[data-bpmn-modeler]');
    var status = toolbar.querySelector('[data-studio-status]');
    var problems = document.querySelector('[data-studio-problems]');
    var note = toolbar.querySelector('#deploy-note');
    var baseVersion = parseInt(toolbar.getAttribute('data-base-version'), 10) || null;

    new MutationObserver(function () {
      attachPickers(document);
    }).observe(container || document.body, { childList: true, subtree: true });

    function say(text) {
      status.textContent = text;
    }

    function clearProblems(modeler) {
      var canvas = modeler.get('canvas');
      modeler.get('elementRegistry').getAll().forEach(function (element) {
        canvas.removeMarker(element, ERROR_MARKER);
      });
      problems.replaceChildren();
      problems.hidden = true;
    }

    function showProblems(modeler, errors) {
      var canvas = modeler.get('canvas');
      var registry = modeler.get('elementRegistry');
      var items = Array.isArray(errors)
        ? errors
        : Object.keys(errors || {}).map(function (field) {
            return { message: field + '：' + [].concat(errors[field]).join('；') };
          });
      items.forEach(function (error) {
        var item = document.createElement('li');
        var where = error.element_id ? error.element_id + '：' : '';
        var line = error.line ? '（第 ' + error.line + ' 行）' : '';
        item.textContent = where + error.message + line;
        var element = error.element_id ? registry.get(error.element_id) : null;
        if (element) {
          canvas.addMarker(element, ERROR_MARKER);
          item.setAttribute('data-element-id', error.element_id);
          item.tabIndex = 0;
          item.addEventListener('click', function () {
            modeler.get('selection').select(element);
            canvas.scrollToElement(element);
          });
        }
        problems.append(item);
      });
      problems.hidden = items.length === 0;
    }

    async function currentXml(modeler) {
      var saved = await modeler.saveXML({ format: true });
      return saved.xml;
    }

    async function answer(response) {
      try {
        return await response.json();
      } catch (error) {
        return {};
      }
    }

    async function validate() {
      var modeler = modelerOf(container);
      if (!modeler) {
        return;
      }
      clearProblems(modeler);
      say('正在校验…');
      var response = await post(toolbar.getAttribute('data-validate-url'), await currentXml(modeler), 'application/xml');
      var body = await answer(response);
      if (response.ok) {
        say('校验通过，可以部署');
        return;
      }
      say('校验未通过（' + response.status + '）' + (body.message ? '：' + body.message : ''));
      showProblems(modeler, body.errors);
    }

    async function deploy() {
      var modeler = modelerOf(container);
      if (!modeler) {
        return;
      }
      var text = note.value.trim();
      if (!text) {
        say('请先填写变更说明');
        note.focus();
        return;
      }
      clearProblems(modeler);
      say('正在部署…');
      var payload = JSON.stringify({ xml: await currentXml(modeler), note: text, base_version: baseVersion });
      var response = await post(toolbar.getAttribute('data-deploy-url'), payload, 'application/json');
      var body = await answer(response);
      if (!response.ok) {
        say('部署失败（' + response.status + '）' + (body.message ? '：' + body.message : ''));
        showProblems(modeler, body.errors);
        return;
      }
      say(body.created ? '已部署为版本 ' + body.version + '。' : '内容与版本 ' + body.version + ' 相同，未产生新版本。');
      [
        [body.process_url, '查看版本列表'],
        [body.migrate_url, '迁移运行中的实例'],
      ].forEach(function (link) {
        var anchor = document.createElement('a');
        anchor.href = link[0];
        anchor.textContent = link[1];
        anchor.className = 'btn btn-link';
        status.append(' ', anchor);
      });
    }

    toolbar.querySelector('[data-studio-validate]').addEventListener('click', function () {
      validate().catch(function (error) {
        say('校验失败：' + error.message);
      });
    });
    toolbar.querySelector('[data-studio-deploy]').addEventListener('click', function () {
      deploy().catch(function (error) {
        say('部署失败：' + error.message);
      });
    });
  }

  var toolbar = document.querySelector('[data-studio-editor]');
  if (toolbar) {
    setupEditor(toolbar);
  }
})();
