/** An audience's name: lower-case letters, digits and '-', at most 63, beginning with a letter or digit. */
export const AUDIENCE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
