; Inno Setup script of the rcm-viewer Windows installer (not built on the Linux build machine;
; installer/ci/build-installers.yml builds it on windows-latest).
;   python installer\build.py --flavour small
;   iscc /DFlavour=small /DAppVersion=0.1.0 installer\windows\rcm-viewer.iss
; Installs the PyInstaller one-folder app, a Start-menu entry and "Open with rcm-viewer" for
; TIFF/BMP/PNG/JPEG (OpenWithProgids: never takes over the default image viewer).
; Per-user install by default (no administrator rights needed in a clinic).

#ifndef Flavour
  #define Flavour "small"
#endif
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "rcm-viewer"
#define ProgId "rcm-viewer.mosaic"

[Setup]
AppId={{5C3E8F2A-7B1D-4E0A-9C55-2B8E6F1D3A47}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=rcm-viewer developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
OutputDir=..\dist
OutputBaseFilename=rcm-viewer-{#AppVersion}-{#Flavour}-windows-setup
SetupIconFile=..\build\icons\rcm-viewer.ico
UninstallDisplayIcon={app}\rcm-viewer.exe
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
ChangesAssociations=yes
WizardStyle=modern

[Files]
Source: "..\dist\{#Flavour}\rcm-viewer\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\rcm-viewer"; Filename: "{app}\rcm-viewer.exe"; Comment: "Reader-assist viewer for RCM mosaics"
Name: "{autodesktop}\rcm-viewer"; Filename: "{app}\rcm-viewer.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop icon"; Flags: unchecked

[Registry]
Root: HKA; Subkey: "Software\Classes\{#ProgId}"; ValueType: string; ValueData: "RCM mosaic"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\{#ProgId}\DefaultIcon"; ValueType: string; ValueData: "{app}\rcm-viewer.exe,0"
Root: HKA; Subkey: "Software\Classes\{#ProgId}\shell\open\command"; ValueType: string; ValueData: """{app}\rcm-viewer.exe"" ""%1"""
Root: HKA; Subkey: "Software\Classes\.tif\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.tiff\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.png\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.jpg\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.jpeg\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.bmp\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue

[Run]
Filename: "{app}\rcm-viewer.exe"; Description: "Start rcm-viewer"; Flags: nowait postinstall skipifsilent
