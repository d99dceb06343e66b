"""The operator dashboard: a Flask app of its own (`create_ui_app`) on its own HTTPS listener
(`listener`), started by `derflex serve`. Pages read through server.db.dashboard and the services;
every change is a service command, recorded in the audit log (server.services.accounts)."""
