"""The outside parties behind small interfaces: sources, SMS gateway, notifiers, charts."""
