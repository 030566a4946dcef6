"""Stand-ins for the upstream services, speaking their real wire protocols."""
