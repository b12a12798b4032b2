// Keyboard shortcuts of the reviewer app: a approve, e edit, r reject, n next;
// Escape leaves a text box. A file, not an inline script: the content security
// policy allows scripts from this site only.
(function () {
  var next = document.currentScript.dataset.next;
  document.addEventListener("keydown", function (event) {
    var typing = /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName);
    if (event.key === "Escape" && typing) { document.activeElement.blur(); return; }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var go = {
      a: function () { var f = document.getElementById("approve-form"); if (f) { f.requestSubmit(); } },
      e: function () { var t = document.getElementById("id_output"); if (t) { t.focus(); } },
      r: function () { var t = document.getElementById("id_reason"); if (t) { t.focus(); } },
      n: function () {
        var link = document.getElementById("next");
        if (link) { link.click(); } else if (next) { window.location = next; }
      }
    }[event.key];
    if (go) { event.preventDefault(); go(); }
  });
})();
