/**
 * The directory settings (DIRECTORY_* in config.ts) as LdapDirectory takes them, checked at start:
 * a directory is configured when DIRECTORY_URL is set, and then every setting it needs must be
 * there and valid; a DIRECTORY_* setting without DIRECTORY_URL is refused too (a forgotten URL
 * would silently leave directory audiences unresolvable). Each problem names its variable.
 */
import { readFileSync } from "node:fs";
import { checkDirectorySettings, DirectoryError, type LdapDirectorySettings } from "./ldap-directory.js";

export interface DirectoryConfig {
  DIRECTORY_URL?: string;
  DIRECTORY_STARTTLS: boolean;
  DIRECTORY_CA_FILE?: string;
  DIRECTORY_BIND_DN?: string;
  DIRECTORY_BIND_PASSWORD?: string;
  DIRECTORY_BIND_PASSWORD_FILE?: string;
  DIRECTORY_BASE_DN?: string;
  DIRECTORY_MAIL_ATTRIBUTE: string;
  DIRECTORY_MEMBER_ATTRIBUTE: string;
  DIRECTORY_MEMBER_OF_ATTRIBUTE: string;
  DIRECTORY_ENABLED_FILTER?: string;
  DIRECTORY_TIMEOUT_MS: number;
}

/** LdapDirectorySettings field → the variable that sets it, to name it in a problem. */
const VARIABLE: Record<string, keyof DirectoryConfig> = {
  url: "DIRECTORY_URL",
  startTls: "DIRECTORY_STARTTLS",
  bindDn: "DIRECTORY_BIND_DN",
  bindPassword: "DIRECTORY_BIND_PASSWORD",
  bindPasswordFile: "DIRECTORY_BIND_PASSWORD_FILE",
  baseDn: "DIRECTORY_BASE_DN",
  mailAttribute: "DIRECTORY_MAIL_ATTRIBUTE",
  memberAttribute: "DIRECTORY_MEMBER_ATTRIBUTE",
  memberOfAttribute: "DIRECTORY_MEMBER_OF_ATTRIBUTE",
  enabledFilter: "DIRECTORY_ENABLED_FILTER",
  timeoutMs: "DIRECTORY_TIMEOUT_MS",
};

/** Problems with the DIRECTORY_* settings, each naming its variable; [] when fine (or no directory). */
export function checkDirectoryConfig(c: DirectoryConfig): string[] {
  if (c.DIRECTORY_URL === undefined) {
    const stray = (["DIRECTORY_BIND_DN", "DIRECTORY_BIND_PASSWORD", "DIRECTORY_BIND_PASSWORD_FILE", "DIRECTORY_BASE_DN", "DIRECTORY_ENABLED_FILTER", "DIRECTORY_CA_FILE"] as const).filter((k) => c[k] !== undefined);
    return stray.map((k) => `${k}: set without DIRECTORY_URL (set DIRECTORY_URL to use a directory, or unset ${k})`);
  }
  const problems: string[] = [];
  if (c.DIRECTORY_BIND_DN === undefined) problems.push("DIRECTORY_BIND_DN: required with DIRECTORY_URL");
  if (c.DIRECTORY_BASE_DN === undefined) problems.push("DIRECTORY_BASE_DN: required with DIRECTORY_URL");
  if ((c.DIRECTORY_BIND_PASSWORD === undefined) === (c.DIRECTORY_BIND_PASSWORD_FILE === undefined)) {
    problems.push("DIRECTORY_BIND_PASSWORD: give exactly one of DIRECTORY_BIND_PASSWORD and DIRECTORY_BIND_PASSWORD_FILE");
  }
  if (c.DIRECTORY_URL.startsWith("ldaps:") && c.DIRECTORY_STARTTLS) problems.push("DIRECTORY_STARTTLS: for ldap:// URLs (ldaps:// is TLS already)");
  if (problems.length) return problems;
  try {
    checkDirectorySettings(settingsOf(c, undefined));
  } catch (e) {
    if (!(e instanceof DirectoryError)) throw e;
    // "Directory settings: enabledFilter is not …" → "DIRECTORY_ENABLED_FILTER: is not …"
    const m = /^Directory settings: (\w+) (.*?)\.?$/.exec(e.message);
    const variable = m ? VARIABLE[m[1]!] : undefined;
    problems.push(variable ? `${variable}: ${m![2]}` : `DIRECTORY_URL: ${e.message}`);
  }
  if (c.DIRECTORY_CA_FILE !== undefined) {
    try {
      readFileSync(c.DIRECTORY_CA_FILE);
    } catch (e) {
      problems.push(`DIRECTORY_CA_FILE: cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`);
    }
  }
  return problems;
}

/** The LdapDirectory settings of a configured directory (null when DIRECTORY_URL is unset). Reads the CA file. */
export function directorySettings(c: DirectoryConfig): LdapDirectorySettings | null {
  if (c.DIRECTORY_URL === undefined) return null;
  return settingsOf(c, c.DIRECTORY_CA_FILE === undefined ? undefined : readFileSync(c.DIRECTORY_CA_FILE, "utf8"));
}

function settingsOf(c: DirectoryConfig, ca: string | undefined): LdapDirectorySettings {
  return {
    url: c.DIRECTORY_URL!,
    startTls: c.DIRECTORY_STARTTLS,
    ...(ca !== undefined ? { tls: { ca } } : {}),
    bindDn: c.DIRECTORY_BIND_DN!,
    ...(c.DIRECTORY_BIND_PASSWORD !== undefined ? { bindPassword: c.DIRECTORY_BIND_PASSWORD } : { bindPasswordFile: c.DIRECTORY_BIND_PASSWORD_FILE! }),
    baseDn: c.DIRECTORY_BASE_DN!,
    mailAttribute: c.DIRECTORY_MAIL_ATTRIBUTE,
    memberAttribute: c.DIRECTORY_MEMBER_ATTRIBUTE,
    memberOfAttribute: c.DIRECTORY_MEMBER_OF_ATTRIBUTE,
    ...(c.DIRECTORY_ENABLED_FILTER !== undefined ? { enabledFilter: c.DIRECTORY_ENABLED_FILTER } : {}),
    timeoutMs: c.DIRECTORY_TIMEOUT_MS,
  };
}
