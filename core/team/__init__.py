"""A team on one server: members and roles (access), the audit trail (audit)."""
