// The auditor's desk: a click on an event's one-line summary shows its whole payload and hashes below it.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.summary");
  if (!button) return;
  const row = document.getElementById(button.getAttribute("aria-controls"));
  row.hidden = !row.hidden;
  button.setAttribute("aria-expanded", String(!row.hidden));
});
