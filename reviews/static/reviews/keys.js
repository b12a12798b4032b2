// Keyboard shortcuts of the reviewer app: a approve, e edit, r reject, n next,
// u undo the latest approval, c / i a QA verdict; Escape leaves a text box.
// Also counts down each undo toast. A file, not an inline script: the content
// security policy allows scripts from this site only.
(function () {
  var next = document.currentScript.dataset.next;

  function byId(id) { return document.getElementById(id); }

  // The undo toasts: the server says how many seconds are left; at 0 the
  // approval is being recorded and the toast goes.
  Array.prototype.forEach.call(document.querySelectorAll("form.toast[data-left]"), function (toast) {
    var left = parseInt(toast.dataset.left, 10);
    var shown = toast.querySelector(".countdown");
    var timer = window.setInterval(function () {
      left -= 1;
      if (shown) { shown.textContent = String(Math.max(left, 0)); }
      if (left <= 0) { window.clearInterval(timer); toast.classList.add("expired"); }
    }, 1000);
  });

  function check(value) {
    var radio = document.querySelector('#qa-form input[name="verdict"][value="' + value + '"]');
    if (radio) { radio.checked = true; radio.focus(); }
    if (value === "incorrect" && byId("id_category")) { byId("id_category").focus(); }
  }

  document.addEventListener("keydown", function (event) {
    var typing = /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName) &&
      !/radio|checkbox/.test(document.activeElement.type || "");
    if (event.key === "Escape" && typing) { document.activeElement.blur(); return; }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var go = {
      a: function () { var f = byId("approve-form"); if (f) { f.requestSubmit(); } },
      e: function () {
        var first = document.querySelector("#edit-form textarea, #edit-form input:not([type=hidden]), #edit-form select");
        if (first) { first.focus(); }
      },
      r: function () { var t = byId("id_reason"); if (t) { t.focus(); } },
      c: function () { check("correct"); },
      i: function () { check("incorrect"); },
      u: function () {
        var toast = document.querySelector("form.toast:not(.expired)");
        if (toast) { toast.requestSubmit(); }
      },
      n: function () {
        var link = byId("next");
        if (link) { link.click(); } else if (next) { window.location = next; }
      }
    }[event.key];
    if (go) { event.preventDefault(); go(); }
  });
})();
