"""The HTTP side: route registry, JSON errors, body limits, health."""
