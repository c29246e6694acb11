"""The operator console under /console/: accounts, sign-in, the handoff workbench."""
